"""Mixed-load benchmark (issue 22, goal 5): a CRM's mix of reads, appends,
batches and task actions replayed open-loop against a real `ledger serve`.

    .venv/bin/python -m bench.mixed [--store postgresql|sqlite] [--pg-url URL]
                                    [--customers 2000] [--rate 100] [--seconds 60]
                                    [--seed 22] [--arrivals poisson|even]
                                    [--part all|batch-cost|mix] [--repeats 7]
                                    [--open] [--max-connections 256] [--drain 60]
                                    [--server-log PATH] [--format human|json]
    .venv/bin/python -m bench.mixed --seconds 10                # a quick try
    .venv/bin/python -m bench.mixed --part batch-cost           # (a) only

Set-up: a scratch store (a fresh PostgreSQL schema by default, dropped after)
seeded in process with `--customers` customers, each created with a card and a
few events (notes, calls, visits, SMS), one pending task, and for every other
customer a second task already completed, so that task actions have something
to act on. The read models are caught up (and, on PostgreSQL, the tables
analyzed) before anything is timed. An access key with the scopes `ingest`,
`read` and `act-as` is made with `ledger access new-key` (`--open`: no access
file; on loopback the API then needs no key), and a real `ledger serve` process
is started on a free loopback port against the store.

(a) Batch cost (`--part batch-cost`; run first by default): a 200-event batch
    over 200 customers against a 200-event batch over 5 customers (40 events
    each), `--repeats` POSTs of each, interleaved (the order alternating), each
    timed from send to answer on one keep-alive connection. Every batch uses
    seeded customers no earlier batch touched, so their state must be loaded
    from the store (the server caches nothing of them yet); one warm-up pair
    first, not counted. Prints both medians and their ratio. Goal: <= 2x.
    Then the same pass again with new events of the same customers, which the
    server has seen: its medians and ratio.

(b) The mix (`--part mix`): `--rate` requests a second for `--seconds`, kinds
    in fixed shares: 70 % `read` (GET a tab's first page of a random customer:
    timeline 70 % of reads, tasks 15 %, the six other tabs 15 %), 20 % `append`
    (POST /v1/events with one new event of a random customer), 5 % `batch`
    (POST /v1/events with 200 new events, one each over 200 random customers,
    all-or-nothing) and 5 % `task` (a task action as user `u-bench` on a seeded
    task: complete or edit a pending one, reopen a completed one; each task is
    acted on once per run, so every action is allowed). The schedule is fixed
    before the run (`--seed`): send times Poisson (`--arrivals even`: evenly
    spaced), kinds shuffled, every request's bytes prepared. Open loop: an
    asyncio client sends each request at its time on an idle keep-alive
    connection, or a new one (up to `--max-connections`), so a slow answer
    never delays the next send; each latency is counted from the *scheduled*
    send time, so a server (or client) that falls behind shows it. After the
    last send the client waits up to `--drain` seconds for answers still due.

Printed: the offered and achieved rate (answers / seconds from the first
scheduled send to the last answer), per kind the count, non-2xx answers and
transport errors (the first few shown), p50 / p95 / p99 / max in ms; the CPU
seconds of the server process and of the client during the mix; the load
average before and after. Goals (issue 22): one-event appends and task
actions p99 < 100 ms, reads p99 < 50 ms, at 100 req/s of the mix, without
errors; each marked met / not met. Any error makes the exit status 1.

The client is one process (asyncio on uvloop, raw HTTP/1.1): at 100 req/s it
takes a few percent of a core, leaving the machine's cores to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.common import DEFAULT_PG, scratch_store, wait_until_ready
from ledger.config import parse_database_url
from ledger.input import read_items
from services.appending import append_items
from services.bootstrap import Services, prepare_store
from services.tabs import tab_answer, tab_request

LEDGER = str(Path(sys.executable).parent / "ledger")
USER = "u-bench"
BATCH = 200  # events in a batch
NARROW = 5  # customers of the narrow batch in (a)
SHARES = {"read": 0.70, "append": 0.20, "batch": 0.05, "task": 0.05}
# Of the reads: the timeline mostly, then the tasks tab, then the others alike.
READ_TABS = [("timeline", 0.70), ("tasks", 0.15)] + [
    (tab, 0.15 / 6) for tab in ("visits", "segments", "chats", "emails", "orders", "card")
]
GOALS_MS = {"read": 50.0, "append": 100.0, "task": 100.0}  # p99, issue 22 goal 5
BATCH_RATIO_GOAL = 2.0
IDLE_MAX = 2.0  # s: uvicorn closes a keep-alive connection idle for 5 s
SHOWN_ERRORS = 5


# -- the store ---------------------------------------------------------------


@dataclass
class Seeded:
    """What the seeding stored: the customers and the tasks, by state."""

    customers: list[str]
    pending: list[tuple[str, str]]  # (customer, task)
    completed: list[tuple[str, str]]


def _envelope(typ: str, customer: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": typ,
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "actor": {"kind": "integration", "id": "bench"},
        "source": "bench",
        "data": data,
    }


def interaction(rng: random.Random, customer: str, at: datetime) -> dict[str, Any]:
    """One new event of an ordinary kind for `customer`, with subject ids of its own."""
    k = rng.random()
    tag = uuid.uuid4().hex[:12]
    if k < 0.35:
        return _envelope("note.added", customer, {"note_id": f"n-{tag}", "text": "Called."}, at)
    if k < 0.6:
        data: dict[str, Any] = {
            "call_id": f"c-{tag}",
            "direction": "inbound",
            "result": "answered",
            "duration_s": rng.randint(0, 900),
        }
        return _envelope("call.logged", customer, data, at)
    if k < 0.85:
        data = {
            "visit_id": f"v-{tag}",
            "source": "google",
            "channel": "search",
            "duration_s": rng.randint(1, 600),
            "pages_viewed": rng.randint(1, 9),
        }
        return _envelope("visit.recorded", customer, data, at)
    data = {"message_id": f"s-{tag}", "text": "Your parcel is on its way"}
    return _envelope("sms.sent", customer, data, at)


def seed_events(customers: int, rng: random.Random) -> tuple[list[dict[str, Any]], Seeded]:
    """Each customer: created, 3-8 interactions, a pending task, and for every
    other customer a completed one."""
    start = datetime(2026, 6, 1, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    seeded = Seeded([], [], [])
    for i in range(customers):
        cid = f"cust-{i}"
        seeded.customers.append(cid)
        at = start + timedelta(minutes=i)
        events.append(_envelope("customer.created", cid, {"card": {"name": f"Customer {i}"}}, at))
        for n in range(rng.randint(3, 8)):
            events.append(interaction(rng, cid, at + timedelta(hours=n + 1)))
        for t, done in (("a", False), ("b", True)) if i % 2 else (("a", False),):
            task = f"t-{i}-{t}"
            at_task = at + timedelta(days=1)
            data = {"task_id": task, "title": f"Call back {i}", "assignee_id": USER}
            events.append(_envelope("task.created", cid, data, at_task))
            if done:
                later = at_task + timedelta(hours=2)
                events.append(_envelope("task.completed", cid, {"task_id": task}, later))
                seeded.completed.append((cid, task))
            else:
                seeded.pending.append((cid, task))
    return events, seeded


def seed(url: str, customers: int, seed_value: int) -> tuple[Seeded, int]:
    """Store the seed events in process, catch the read models up, and (PostgreSQL)
    analyze the schema's tables, as autovacuum soon would on a live ledger."""
    events, seeded = seed_events(customers, random.Random(seed_value))
    services = Services(db_option=url)
    text = "\n".join(json.dumps(e) for e in events)
    report = append_items(services.app(), services.policy(), read_items(io.StringIO(text)))
    assert not report.rejected, report.rejected[:1]
    with services.connect() as conn:
        prepare_store(conn)
        tab_answer(conn, tab_request(seeded.customers[0], "timeline"))
    services.close()
    if url.startswith("postgresql"):
        import psycopg

        db = parse_database_url(url)
        with psycopg.connect(db.conninfo(), autocommit=True) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (db.schema,)
            ).fetchall()
            for (table,) in tables:
                conn.execute(f'ANALYZE "{db.schema}"."{table}"')
    return seeded, len(events)


def access_key(path: Path) -> str:
    """A fresh key with the scopes the mix needs, added to the access file `path`."""
    scopes = ["--scope", "ingest", "--scope", "read", "--scope", "act-as"]
    out = subprocess.run(
        [
            LEDGER,
            "access",
            "new-key",
            "bench-crm",
            "--access",
            str(path),
            "--format",
            "json",
            *scopes,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    token: str = json.loads(out)["token"]
    return token


@dataclass
class Server:
    """A running `ledger serve`: where, its process, and its stderr's file."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (Linux /proc)."""
        return cpu_seconds(self.process)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def server(url: str, access: Path | None, workdir: Path, workers: int = 1) -> Iterator[Server]:
    """`ledger serve` on a free loopback port against `url`, until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [LEDGER, "--db", url, "serve", "--port", str(port), "--workers", str(workers)]
    if access is not None:
        command += ["--access", str(access)]
    log = workdir / "serve.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "LEDGER_AUTO_MIGRATE": "1"},
        )
    running = Server("127.0.0.1", port, process, log)
    try:
        wait_until_ready(
            port, process, lambda: f"ledger serve did not start:\n{running.log_tail()}"
        )
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


@contextmanager
def follower(url: str, workdir: Path) -> Iterator[subprocess.Popen[bytes] | None]:
    """`ledger projections run --all --follow` beside the server, as a deployment
    runs one (docker-compose.yml's projector): the read models follow the
    appends, and a read seldom has events of its own to apply."""
    log = workdir / "follower.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [LEDGER, "--db", url, "projections", "run", "--all", "--follow"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU so far of a child process and its own children (the
    workers of `serve --workers N`), from Linux /proc; 0 without one."""
    if process is None:
        return 0.0
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if process.pid in (pid, ppid):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# -- requests ----------------------------------------------------------------


@dataclass
class Requests:
    """Makes the raw bytes of each kind of request."""

    host: str
    token: str | None

    def _head(self, method: str, path: str, body: bytes, media: str) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        if self.token is not None:
            lines.append(f"Authorization: Bearer {self.token}")
        if method == "POST":
            lines += [f"Content-Type: {media}", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def read(self, customer: str, tab: str) -> bytes:
        path = f"/v1/customers/{quote(customer, safe='')}/tabs/{tab}"
        if tab == "tasks":
            path += f"?as={USER}"
        return self._head("GET", path, b"", "")

    def append(self, event: dict[str, Any]) -> bytes:
        return self._head("POST", "/v1/events", json.dumps(event).encode(), "application/json")

    def batch(self, events: list[dict[str, Any]]) -> bytes:
        body = "".join(json.dumps(e) + "\n" for e in events).encode()
        return self._head("POST", "/v1/events", body, "application/x-ndjson")

    def task(self, customer: str, task: str, action: str) -> bytes:
        path = (
            f"/v1/customers/{quote(customer, safe='')}/tasks/{quote(task, safe='')}"
            f"/{action}?as={USER}"
        )
        body = b""
        if action == "edit":
            change = {"field": "title", "new": f"Call back ({uuid.uuid4().hex[:6]})"}
            body = json.dumps({"changes": [change]}).encode()
        return self._head("POST", path, body, "application/json")


class Connections:
    """Keep-alive connections to the server: the most recently used idle one is
    taken first (one idle past IDLE_MAX is closed instead: the server may have);
    a new one is opened when none is idle, up to `cap` open at once."""

    def __init__(self, host: str, port: int, cap: int) -> None:
        self.host, self.port, self.cap = host, port, cap
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.open = 0
        self.most_open = 0
        self.freed = asyncio.Condition()

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        while True:
            while self.idle:
                reader, writer, since = self.idle.pop()
                if loop.time() - since < IDLE_MAX:
                    return reader, writer
                self.discard(writer)
            if self.open < self.cap:
                self.open += 1
                self.most_open = max(self.most_open, self.open)
                try:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                except BaseException:
                    self.open -= 1
                    raise
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return reader, writer
            async with self.freed:
                await self.freed.wait()

    async def give(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.idle.append((reader, writer, asyncio.get_running_loop().time()))
        async with self.freed:
            self.freed.notify()

    def discard(self, writer: asyncio.StreamWriter) -> None:
        self.open -= 1
        writer.close()

    async def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes, bool]:
    """Send one request, read its answer: (status, body, whether the server closes)."""
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked, closes = 0, False, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            closes = b"close" in value.lower()
    if not chunked:
        return status, await reader.readexactly(length), closes
    parts = []
    while size := int((await reader.readline()).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readline()
    await reader.readline()
    return status, b"".join(parts), closes


# -- (a) batch cost -------------------------------------------------------------


async def batch_cost(
    host: str, port: int, requests: Requests, seeded: Seeded, repeats: int, rng: random.Random
) -> tuple[dict[str, Any], list[str]]:
    """Wide (200 customers) and narrow (5 customers) 200-event batches, interleaved,
    on customers no earlier batch touched; the customers it used."""
    pool = list(seeded.customers)
    rng.shuffle(pool)
    needed = (repeats + 1) * (BATCH + NARROW)
    reused = needed > len(pool)
    if reused:  # fewer customers than fresh batches need: some are used again
        pool = pool * math.ceil(needed / len(pool))
    now = datetime.now(UTC)

    def body(customers: list[str]) -> bytes:
        each = BATCH // len(customers)
        events = [interaction(rng, c, now) for c in customers for _ in range(each)]
        return requests.batch(events)

    def pairs() -> list[tuple[bytes, bytes]]:
        made = []
        for r in range(repeats + 1):
            at = r * (BATCH + NARROW)
            wide_customers, narrow_customers = (
                pool[at : at + BATCH],
                pool[at + BATCH : at + BATCH + NARROW],
            )
            made.append((body(wide_customers), body(narrow_customers)))
        return made

    reader, writer = await asyncio.open_connection(host, port)
    wide: list[float] = []
    narrow: list[float] = []
    seen_wide: list[float] = []
    seen_narrow: list[float] = []
    errors: list[str] = []
    try:
        # Fresh customers first; then new events of the same customers again,
        # which the server has seen (and keeps, services.appending.KeptAppenders).
        for timings in ((wide, narrow), (seen_wide, seen_narrow)):
            for r, (wide_body, narrow_body) in enumerate(pairs()):
                order = [("wide", wide_body), ("narrow", narrow_body)]
                if r % 2:
                    order.reverse()
                for name, request in order:
                    started = time.perf_counter()
                    status, answer, _ = await exchange(reader, writer, request)
                    elapsed = time.perf_counter() - started
                    if status != 200:
                        errors.append(f"{name} batch: {status} {answer[:300]!r}")
                    if r == 0:
                        continue  # the warm-up pair
                    timings[0 if name == "wide" else 1].append(elapsed)
    finally:
        writer.close()
    wide_ms, narrow_ms = statistics.median(wide) * 1000, statistics.median(narrow) * 1000
    seen_wide_ms = statistics.median(seen_wide) * 1000
    seen_narrow_ms = statistics.median(seen_narrow) * 1000
    result = {
        "repeats": repeats,
        "wide_customers": BATCH,
        "narrow_customers": NARROW,
        "wide_median_ms": round(wide_ms, 1),
        "narrow_median_ms": round(narrow_ms, 1),
        "wide_ms": [round(x * 1000, 1) for x in wide],
        "narrow_ms": [round(x * 1000, 1) for x in narrow],
        "ratio": round(wide_ms / narrow_ms, 2),
        "customers_reused": reused,
        "seen_wide_median_ms": round(seen_wide_ms, 1),
        "seen_narrow_median_ms": round(seen_narrow_ms, 1),
        "seen_ratio": round(seen_wide_ms / seen_narrow_ms, 2),
        "errors": errors,
        "goal_met": not errors and wide_ms / narrow_ms <= BATCH_RATIO_GOAL,
    }
    return result, pool[:needed]


async def warm_up(host: str, port: int, requests: Requests, seeded: Seeded) -> list[str]:
    """One read of every tab the mix reads, one append and one more read, before
    the mix's clock starts: a server's first request of each kind imports
    modules and prepares statements (hundreds of milliseconds once), which
    no steady load pays. The errors, if any."""
    reader, writer = await asyncio.open_connection(host, port)
    customer = seeded.customers[-1]
    event = interaction(random.Random(0), customer, datetime.now(UTC))
    sent = [requests.read(customer, tab) for tab, _ in READ_TABS]
    sent += [requests.append(event), requests.read(customer, "timeline")]
    errors: list[str] = []
    try:
        for request in sent:
            status, answer, _ = await exchange(reader, writer, request)
            if status != 200:
                errors.append(f"warm-up: {status} {answer[:300]!r}")
    finally:
        writer.close()
    return errors


# -- (b) the mix -------------------------------------------------------------------


@dataclass
class Planned:
    """One request of the schedule: when (s after the start), what, its bytes."""

    at: float
    kind: str
    request: bytes


@dataclass
class Outcome:
    """Per kind: latencies of 2xx answers, and what went wrong otherwise."""

    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    transport: int = 0
    shown: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        if len(self.shown) < SHOWN_ERRORS:
            self.shown.append(text)


def schedule(
    args: argparse.Namespace, requests: Requests, seeded: Seeded, rng: random.Random
) -> list[Planned]:
    """The whole run, fixed before it starts: send times, kinds, bytes."""
    times: list[float] = []
    if args.arrivals == "even":
        times = [i / args.rate for i in range(int(args.rate * args.seconds))]
    else:
        t = rng.expovariate(args.rate)
        while t < args.seconds:
            times.append(t)
            t += rng.expovariate(args.rate)
    kinds: list[str] = []
    for kind, share in SHARES.items():
        kinds += [kind] * round(len(times) * share)
    kinds = (kinds + ["read"] * len(times))[: len(times)]
    rng.shuffle(kinds)
    # Each task acted on once: complete or edit a pending one, reopen a completed one.
    tasks = [(c, t, "pending") for c, t in seeded.pending]
    tasks += [(c, t, "completed") for c, t in seeded.completed]
    rng.shuffle(tasks)
    if kinds.count("task") > len(tasks):
        raise SystemExit(f"{kinds.count('task')} task actions but {len(tasks)} seeded tasks")
    tab_names = [tab for tab, _ in READ_TABS]
    tab_weights = [share for _, share in READ_TABS]
    now = datetime.now(UTC)
    out = []
    for at, kind in zip(times, kinds, strict=True):
        if kind == "read":
            tab = rng.choices(tab_names, tab_weights)[0]
            request = requests.read(rng.choice(seeded.customers), tab)
        elif kind == "append":
            request = requests.append(interaction(rng, rng.choice(seeded.customers), now))
        elif kind == "batch":
            chosen = rng.sample(seeded.customers, BATCH)
            request = requests.batch([interaction(rng, c, now) for c in chosen])
        else:
            customer, task, state = tasks.pop()
            action = "reopen" if state == "completed" else rng.choice(["complete", "edit"])
            request = requests.task(customer, task, action)
        out.append(Planned(at, kind, request))
    return out


async def replay(
    plan: list[Planned], host: str, port: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Send each planned request at its time; latency from that time to the answer."""
    loop = asyncio.get_running_loop()
    connections = Connections(host, port, args.max_connections)
    outcomes = {kind: Outcome() for kind in SHARES}
    # Warm connections, so the first sends do not pay for opening them.
    warm = [await connections.take() for _ in range(16)]
    for reader, writer in warm:
        await connections.give(reader, writer)
    last_answer = 0.0

    async def one(item: Planned, due: float) -> None:
        nonlocal last_answer
        outcome = outcomes[item.kind]
        try:
            reader, writer = await connections.take()
        except OSError as exc:
            outcome.transport += 1
            outcome.error(f"connect: {exc!r}")
            return
        try:
            status, body, closes = await exchange(reader, writer, item.request)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            connections.discard(writer)
            outcome.transport += 1
            outcome.error(f"at {item.at:.2f} s: {exc!r}")
            return
        done = loop.time()
        last_answer = max(last_answer, done)
        if closes:
            connections.discard(writer)
        else:
            await connections.give(reader, writer)
        if 200 <= status < 300:
            outcome.latencies.append(done - due)
        else:
            outcome.non_2xx += 1
            outcome.error(f"at {item.at:.2f} s: {status} {body[:300]!r}")

    started = loop.time() + 0.2
    pending: set[asyncio.Task[None]] = set()
    for item in plan:
        due = started + item.at
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(item, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    sent_all = loop.time()
    unfinished = 0
    if pending:
        _, still = await asyncio.wait(set(pending), timeout=args.drain)
        unfinished = len(still)
        for task in still:
            task.cancel()
    await connections.close()
    answered = sum(len(o.latencies) + o.non_2xx for o in outcomes.values())
    wall = max(last_answer, sent_all) - started
    kinds: dict[str, Any] = {}
    for kind, o in outcomes.items():
        ordered = sorted(o.latencies)

        def pct(p: float, ordered: list[float] = ordered) -> float | None:
            if not ordered:
                return None
            return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000, 1)

        kinds[kind] = {
            "planned": sum(1 for item in plan if item.kind == kind),
            "ok": len(o.latencies),
            "non_2xx": o.non_2xx,
            "transport_errors": o.transport,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": pct(1.0),
            "first_errors": o.shown,
        }
    return {
        "planned": len(plan),
        "answered": answered,
        "unfinished": unfinished,
        "seconds": round(wall, 2),
        "achieved_rate": round(answered / wall, 1),
        "ok_rate": round(sum(len(o.latencies) for o in outcomes.values()) / wall, 1),
        "client_lag_s": round(sent_all - (started + plan[-1].at), 3) if plan else 0.0,
        "most_connections": connections.most_open,
        "kinds": kinds,
    }


def mix_goals(mix: dict[str, Any]) -> dict[str, bool]:
    goals = {}
    for kind, limit in GOALS_MS.items():
        k = mix["kinds"][kind]
        clean = k["non_2xx"] == 0 and k["transport_errors"] == 0 and k["ok"] == k["planned"]
        goals[f"{kind}_p99_under_{int(limit)}ms"] = (
            clean and k["p99_ms"] is not None and k["p99_ms"] < limit
        )
    return goals


# -- running it ----------------------------------------------------------------------


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    result: dict[str, Any] = {
        "store": args.store,
        "customers": args.customers,
        "rate": args.rate,
        "seconds": args.seconds,
        "arrivals": args.arrivals,
        "seed": args.seed,
        "with_key": not args.open,
        "follower": args.follower,
        "workers": args.workers,
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-mixed-") as tmp,
        scratch_store(args.store, args.pg_url) as url,
    ):
        workdir = Path(tmp)
        started = time.perf_counter()
        seeded, events = seed(url, args.customers, args.seed)
        result["seeded_events"] = events
        result["seed_seconds"] = round(time.perf_counter() - started, 1)
        access, token = None, None
        if not args.open:
            access = workdir / "access.toml"
            token = access_key(access)
        with (
            server(url, access, workdir, args.workers) as srv,
            follower(url, workdir) if args.follower else nullcontext() as follows,
            asyncio.Runner(loop_factory=_loop_factory()) as r,
        ):
            requests = Requests(srv.host, token)
            result["load_before"] = [round(x, 2) for x in os.getloadavg()]
            if args.part in ("all", "batch-cost"):
                cost, _ = r.run(batch_cost(srv.host, srv.port, requests, seeded, args.repeats, rng))
                result["batch_cost"] = cost
            if args.part in ("all", "mix"):
                result["warm_up_errors"] = r.run(warm_up(srv.host, srv.port, requests, seeded))
                plan = schedule(args, requests, seeded, rng)
                result["load_before_mix"] = [round(x, 2) for x in os.getloadavg()]
                server_cpu, client_cpu = srv.cpu_seconds(), time.process_time()
                follower_cpu = cpu_seconds(follows)
                mix = r.run(replay(plan, srv.host, srv.port, args))
                mix["server_cpu_s"] = round(srv.cpu_seconds() - server_cpu, 1)
                mix["follower_cpu_s"] = round(cpu_seconds(follows) - follower_cpu, 1)
                mix["client_cpu_s"] = round(time.process_time() - client_cpu, 1)
                mix["goals"] = mix_goals(mix)
                result["mix"] = mix
            result["load_after"] = [round(x, 2) for x in os.getloadavg()]
            if failed(result):
                result["server_log_tail"] = srv.log_tail()
        if args.server_log is not None:
            shutil.copyfile(workdir / "serve.log", args.server_log)
    return result


def failed(result: dict[str, Any]) -> bool:
    """Whether any request failed (a non-2xx answer, a transport error, no answer)."""
    bad = bool(result.get("batch_cost", {}).get("errors") or result.get("warm_up_errors"))
    mix = result.get("mix")
    if mix is not None:
        bad = bad or mix["unfinished"] > 0
        bad = bad or any(k["non_2xx"] or k["transport_errors"] for k in mix["kinds"].values())
    return bad


def human(result: dict[str, Any]) -> str:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    load = " ".join(str(x) for x in result["load_before"])
    lines = [
        f"bench.mixed: {result['store']}, {result['customers']} customers "
        f"({result['seeded_events']} events seeded in {result['seed_seconds']} s), "
        f"{'an access key' if result['with_key'] else 'open (no key)'}; load before {load}"
    ]
    cost = result.get("batch_cost")
    if cost is not None:
        lines += [
            "",
            f"(a) 200-event batch, median of {cost['repeats']} (interleaved, fresh customers"
            f"{'; some REUSED' if cost['customers_reused'] else ''}):",
            f"    over {cost['wide_customers']} customers  {cost['wide_median_ms']:8.1f} ms"
            f"   {cost['wide_ms']}",
            f"    over {cost['narrow_customers']} customers    {cost['narrow_median_ms']:8.1f} ms"
            f"   {cost['narrow_ms']}",
            f"    ratio {cost['ratio']}   goal <= {BATCH_RATIO_GOAL}x: {met(cost['goal_met'])}",
            f"    the same customers again (seen by the server): over {cost['wide_customers']} "
            f"{cost['seen_wide_median_ms']:.1f} ms, over {cost['narrow_customers']} "
            f"{cost['seen_narrow_median_ms']:.1f} ms, ratio {cost['seen_ratio']}",
        ]
        lines += [f"    ERROR {e}" for e in cost["errors"]]
    mix = result.get("mix")
    if mix is not None:
        lines += [
            "",
            f"(b) the mix, {result['arrivals']} arrivals, seed {result['seed']}: offered "
            f"{result['rate']} req/s for {result['seconds']} s ({mix['planned']} requests); "
            f"achieved {mix['achieved_rate']} req/s ({mix['answered']} answers in "
            f"{mix['seconds']} s; 2xx {mix['ok_rate']} req/s)",
            f"    connections at most {mix['most_connections']}; last send "
            f"{mix['client_lag_s'] * 1000:.1f} ms late; CPU: server {mix['server_cpu_s']} s, "
            f"projection follower {mix['follower_cpu_s']} s, client {mix['client_cpu_s']} s",
            "",
            f"    {'kind':<8}{'count':>7}{'errors':>8}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}"
            "   ms, from the scheduled send",
        ]
        for kind, k in mix["kinds"].items():
            errors = k["planned"] - k["ok"]  # non-2xx, transport errors, unanswered
            cells = "".join(
                f"{k[p]:>9.1f}" if k[p] is not None else f"{'-':>9}"
                for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
            )
            lines.append(f"    {kind:<8}{k['planned']:>7}{errors:>8}{cells}")
        if mix["unfinished"]:
            lines.append(f"    ERROR {mix['unfinished']} requests unanswered after the drain")
        for kind, k in mix["kinds"].items():
            for e in k["first_errors"]:
                lines.append(f"    ERROR {kind}: {e}")
        lines.append("")
        for goal, ok in mix["goals"].items():
            lines.append(f"    goal {goal} (no errors): {met(ok)}")
    lines.append(f"load after {' '.join(str(x) for x in result['load_after'])}")
    if "server_log_tail" in result:
        lines += ["", "requests FAILED; the server's log ends:", result["server_log_tail"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--customers", type=int, default=2000, help="customers seeded")
    parser.add_argument("--rate", type=float, default=100.0, help="(b): requests offered a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="(b): length of the replay")
    parser.add_argument("--seed", type=int, default=22, help="the schedule's and the seed's")
    parser.add_argument("--arrivals", choices=["poisson", "even"], default="poisson")
    parser.add_argument("--part", choices=["all", "batch-cost", "mix"], default="all")
    parser.add_argument("--repeats", type=int, default=7, help="(a): batches of each kind")
    parser.add_argument("--open", action="store_true", help="no access file, no key")
    parser.add_argument("--workers", type=int, default=1, help="`ledger serve --workers`")
    parser.add_argument(
        "--no-follower",
        dest="follower",
        action="store_false",
        help="no `ledger projections run --follow` beside the server",
    )
    parser.add_argument("--max-connections", type=int, default=256, help="(b): client's cap")
    parser.add_argument("--drain", type=float, default=60.0, help="(b): s to wait after sends")
    parser.add_argument("--server-log", type=Path, help="keep `ledger serve`'s stderr there")
    parser.add_argument("--format", choices=["human", "json"], default="human")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result) if args.format == "json" else human(result), flush=True)
    sys.exit(1 if failed(result) else 0)


if __name__ == "__main__":
    main()
