"""Read-model benchmark: full rebuild against a raw read of the same events, and
tab latency for a very busy and a small customer.

    .venv/bin/python -m bench.projections [--events 1000000] [--store sqlite|postgresql]
                                          [--db URL] [--cli-runs 20]

Fills an empty store with N events (default 1,000,000) of every type: three
very busy customers (10 %, 5 % and 2 % of all events; the busiest has 100,000
at the default N) and small customers of about 50 events each. Rows go in
through the ledger's own recorder (`write_session`: positions, hash chain) but
skip the append service's validation, which is not what is measured here; the
generator writes only valid histories.

(a) `ledger projections rebuild --all` in a child process (the real CLI: shadow
    tables, bulk load, index build, swap): events/s from its report, and its
    peak RSS. Then, in this process, a raw read and decode of the same events
    (`iter_rows` + `parse_recorded_json`, and + `json.loads`): events/s and the
    ratio rebuild / raw.
(b) `tab` latency, p50/p99, for the busiest and a small customer: in process
    (the query alone, and with the read-your-writes check `ledger tab` makes),
    and through the CLI (a fresh process per call).

(c) erasure of the busiest customer (`customers erase`, read models included),
    and its timeline tab latency after.
(d) first, on scratch stores of `--encryption-events` events: in-process
    rebuild of the same events stored encrypted (read-model cells sealed) vs
    stored plain (cells plain): the cost of encryption.

`--db` takes a URL of an empty store; without it a scratch store of `--store`
is created and dropped afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_PG, scratch_store
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.events import PAYLOADS, parse_recorded_json
from ledger.keystore.keyring import Keyring
from ledger.personal import seal
from ledger.reading import head_position, iter_rows
from ledger.rights import ALLOW_ALL
from ledger.stores.rows import LedgerStoredEvent
from projections.rebuild import rebuild
from projections.registry import NAMES, TAB_NAMES, get
from projections.runner import catch_up_live
from projections.schema import ensure_schema
from projections.sealing import Sealer
from projections.tabs import TabRequest, read_tab
from services.customers import erase_customer

WRITE_BATCH = 5000
BUSY = (("busy-1", 0.10), ("busy-2", 0.05), ("busy-3", 0.02))
SMALL_CUSTOMER_EVENTS = 50
LEDGER = str(Path(sys.executable).parent / "ledger")
_ZONES = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)))


class _Customer:
    """Emits one customer's events as short valid episodes (an email and what
    the customer did with it, a dialogue, a task's life, ...)."""

    def __init__(self, cid: str, rng: random.Random, start: datetime) -> None:
        self.cid = cid
        self.rng = rng
        self.clock = start + timedelta(minutes=rng.randint(0, 10_000))
        self.zone = rng.choice(_ZONES)
        self.n = 0
        self.segments: set[str] = set()
        self.queue: list[tuple[str, dict[str, Any]]] = [
            ("customer.created", {"card": {"name": cid, "email": f"{cid}@example.com"}})
        ]

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{self.cid}-{prefix}{self.n}"

    def next(self) -> tuple[str, dict[str, Any], datetime]:
        if not self.queue:
            self._episode()
        event_type, data = self.queue.pop(0)
        self.clock += timedelta(seconds=self.rng.randint(30, 7200))
        return event_type, data, self.clock.astimezone(self.zone)

    def _episode(self) -> None:
        rng, q = self.rng, self.queue
        r = rng.random()
        if r < 0.10:
            q.append(("note.added", {"note_id": self._id("n"), "text": "Called back, all fine."}))
        elif r < 0.20:
            q.append(
                (
                    "call.logged",
                    {
                        "call_id": self._id("c"),
                        "direction": rng.choice(("inbound", "outbound")),
                        "result": rng.choice(("answered", "missed")),
                        "duration_s": rng.randint(0, 900),
                    },
                )
            )
        elif r < 0.26:
            sid = self._id("s")
            q.append(("sms.sent", {"message_id": sid, "text": "Your parcel is on its way"}))
            q.append(("sms.delivered", {"message_id": sid}))
        elif r < 0.46:
            q.append(
                (
                    "visit.recorded",
                    {
                        "visit_id": self._id("v"),
                        "site": "shop.example.com",
                        "source": rng.choice(("google", "newsletter", "(direct)")),
                        "channel": rng.choice(("search", "email", "direct")),
                        "duration_s": rng.randint(1, 900),
                        "pages_viewed": rng.randint(1, 12),
                    },
                )
            )
        elif r < 0.66:
            mid = self._id("e")
            q.append(("email.sent", {"message_id": mid, "subject": "Autumn sale: 20% off"}))
            q.append(("email.delivered", {"message_id": mid}))
            for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
                q.append(("email.opened", {"message_id": mid}))
            if rng.random() < 0.3:
                q.append(("email.clicked", {"message_id": mid, "url": "https://shop/sale"}))
        elif r < 0.76:
            did = self._id("d")
            q.append(
                (
                    "chat.started",
                    {"dialog_id": did, "channel": "whatsapp", "url": f"https://chat/{did}"},
                )
            )
            q.append(("chat.status_changed", {"dialog_id": did, "status": "in_progress"}))
            for _ in range(rng.randint(1, 6)):
                q.append(
                    (
                        "chat.message",
                        {
                            "dialog_id": did,
                            "message_id": self._id("m"),
                            "direction": rng.choice(("inbound", "outbound")),
                            "text": "Hello, where is my order?",
                        },
                    )
                )
            q.append(("chat.status_changed", {"dialog_id": did, "status": "closed"}))
        elif r < 0.84:
            tid = self._id("t")
            q.append(
                (
                    "task.created",
                    {
                        "task_id": tid,
                        "title": "Call back about delivery",
                        "due_at": "2026-12-01T09:00:00+01:00",
                        "assignee_id": "u-1",
                    },
                )
            )
            if rng.random() < 0.3:
                changes = [{"field": "title", "old": "Call back", "new": "Call back today"}]
                q.append(("task.edited", {"task_id": tid, "changes": changes}))
            if rng.random() < 0.7:
                q.append(("task.completed", {"task_id": tid}))
                if rng.random() < 0.2:
                    q.append(("task.reopened", {"task_id": tid}))
            if rng.random() < 0.1:
                q.append(("task.deleted", {"task_id": tid}))
        elif r < 0.90:
            oid = self._id("o")
            q.append(
                (
                    "order.created",
                    {"order_id": oid, "number": f"A-{self.n}", "status": "new", "total": "99.90"},
                )
            )
            for old, new in (("new", "paid"), ("paid", "shipped"))[: rng.randint(1, 2)]:
                changes = [{"field": "status", "old": old, "new": new}]
                q.append(("order.changed", {"order_id": oid, "changes": changes}))
        elif r < 0.95:
            segment = rng.choice(("vip", "newsletter", "churn-risk"))
            if segment in self.segments:
                self.segments.discard(segment)
                q.append(("segment.left", {"segment_id": segment}))
            else:
                self.segments.add(segment)
                q.append(("segment.joined", {"segment_id": segment, "segment_name": segment}))
        elif r < 0.99:
            changes = [{"field": "phone", "old": None, "new": f"+4930{self.n:07d}"}]
            q.append(("customer.card_changed", {"changes": changes}))
        else:
            q.append(
                (
                    "file.attached",
                    {"file_id": self._id("f"), "name": "contract.pdf", "size_bytes": 48213},
                )
            )


def generate(count: int, seed: int = 7) -> Iterator[tuple[str, str, dict[str, Any], datetime]]:
    """(customer_id, type, data, occurred_at) for `count` events, customers interleaved."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    busy_share = sum(share for _, share in BUSY)
    small = max(1, int(count * (1 - busy_share)) // SMALL_CUSTOMER_EVENTS)
    people = [_Customer(f"cust-{i}", rng, start) for i in range(small)]
    busy = [(_Customer(name, rng, start), share) for name, share in BUSY]
    created = 0
    for n in range(count):
        r = rng.random()
        acc, who = 0.0, None
        for customer, share in busy:
            acc += share
            if r < acc:
                who = customer
                break
        if who is None:
            # Small customers come to life one after the other, as a CRM grows.
            if created < small and (n * small) // count >= created:
                who = people[created]
                created += 1
            else:
                who = people[rng.randrange(max(created, 1))]
        event_type, data, occurred = who.next()
        yield who.cid, event_type, data, occurred


def fill(
    url: str,
    count: int,
    events: Iterator[tuple[str, str, dict[str, Any], datetime]] | None = None,
    *,
    encrypt: bool = True,
    type_versions: dict[str, int] | None = None,
) -> float:
    """Store `count` generated events (or the given ones); seconds taken. With
    `encrypt` personal values are sealed as the mapper seals them on append;
    `type_versions` stores the named types under another version than the current
    one (their data must be of that version: bench.upcast)."""
    app = LedgerApplication(parse_database_url(url), create_tables=True)
    ring = Keyring.for_url(app.url)
    versions: dict[str, int] = {}
    recorded_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    started = time.perf_counter()
    batch: list[LedgerStoredEvent] = []

    def flush() -> None:
        with app.ledger_recorder.write_session() as session:
            if encrypt:
                ring.prepare(session, {str(e.customer_id) for e in batch})
                batch[:] = [
                    dataclasses.replace(
                        e, state=seal(e.state, e.topic, str(e.customer_id), str(e.event_id), ring)
                    )
                    for e in batch
                ]
            session.insert(batch)
        batch.clear()

    source = generate(count) if events is None else events
    for n, (cid, event_type, data, occurred) in enumerate(source):
        version = versions.get(cid, 0) + 1
        versions[cid] = version
        payload = PAYLOADS[event_type]
        event_id = str(uuid.UUID(int=n + 1))
        state = json.dumps(
            {
                "event_id": event_id,
                "type": event_type,
                "customer_id": cid,
                "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
                "actor": {"kind": "user", "id": "u-1", "name": "Maria"},
                "source": "bench",
                "data": data,
                "recorded_at": recorded_at,
                "schema_version": (type_versions or {}).get(event_type, payload.schema_version),
            }
        ).encode()
        subject = (
            f"{payload.subject_kind}:{data[payload.subject_field]}"
            if payload.subject_kind and payload.subject_field
            else None
        )
        batch.append(
            LedgerStoredEvent(
                originator_id=customer_stream_id(cid),
                originator_version=version,
                topic=event_type,
                state=state,
                event_id=event_id,
                customer_id=cid,
                subject=subject,
                creates_subject=payload.creates_subject,
            )
        )
        if len(batch) >= WRITE_BATCH:
            flush()
    if batch:
        flush()
    app.close()
    return time.perf_counter() - started


def rebuild_in_child(url: str) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run(
        [LEDGER, "--db", url, "projections", "rebuild", "--all", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = json.loads(result.stdout.splitlines()[-1])
    # ru_maxrss of children is the largest of any child so far: only this one ran.
    return {**done, "wall_seconds": wall, "peak_rss_mb": max(peak_kb, before) / 1024}


def raw_read(url: str, decode: Callable[[bytes], object]) -> tuple[int, float]:
    with Connection(parse_database_url(url)) as conn:
        started = time.perf_counter()
        n = 0
        for row in iter_rows(conn, 0, 1000):
            decode(row.state)
            n += 1
        return n, time.perf_counter() - started


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def tab_latency(url: str, customer: str, tab: str, runs: int, check: bool) -> tuple[float, float]:
    request = TabRequest(customer_id=customer, tab=tab)
    projection = get(tab)
    with Connection(parse_database_url(url)) as conn:
        for _ in range(5):  # warm caches and prepared statements
            read_tab(conn, request)
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            if check:
                catch_up_live(conn, [projection])
            read_tab(conn, request)
            samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def cli_latency(url: str, customer: str, tab: str, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [LEDGER, "--db", url, "tab", customer, tab, "--format", "json"],
            capture_output=True,
            check=True,
        )
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def rebuild_in_process(url: str) -> float:
    """`rebuild --all` in this process; events/s."""
    with Connection(parse_database_url(url)) as conn:
        ensure_schema(conn)
        report = rebuild(conn, [get(name) for name in NAMES])
    return report.events / report.seconds


@contextmanager
def sealing_off() -> Iterator[None]:
    """Read-model cells stored as given: the "without encryption" baseline (bench only)."""
    text, json_text = Sealer.text, Sealer.json_text
    Sealer.text = lambda self, customer_id, value: value  # type: ignore[method-assign]
    Sealer.json_text = lambda self, customer_id, value: value  # type: ignore[method-assign]
    try:
        yield
    finally:
        Sealer.text, Sealer.json_text = text, json_text  # type: ignore[method-assign]


def encryption_cost(kind: str, pg_url: str, events: int) -> None:
    """Rebuild of the same events stored encrypted vs plain (read models sealed vs not)."""
    rates = {}
    for encrypted in (False, True):
        with scratch_store(kind, pg_url) as url:
            fill(url, events, encrypt=encrypted)
            if encrypted:
                rates[encrypted] = rebuild_in_process(url)
            else:
                with sealing_off():
                    rates[encrypted] = rebuild_in_process(url)
    cost = 1 - rates[True] / rates[False]
    print(
        f"  rebuild --all (in process), {events:,} events: without encryption "
        f"{rates[False]:,.0f} events/s, with {rates[True]:,.0f} events/s (cost {cost:.0%})"
    )


def erasure_latency(url: str, customer: str) -> None:
    app = LedgerApplication(parse_database_url(url))
    try:
        # `fill` skips the append path, and with it the snapshots it takes every
        # 500 events: take the one a real ledger would have, untimed.
        with Connection(app.url) as conn:
            state, _ = app.load_customer(conn, customer)
            app.store_snapshot(conn, state)
        started = time.perf_counter()
        erase_customer(app, ALLOW_ALL, customer, "bench", "bench")
        took = time.perf_counter() - started
    finally:
        app.close()
    q50, q99 = tab_latency(url, customer, "timeline", 50, check=False)
    print(
        f"  erase {customer}: {took:.2f} s (read models included: they hold ciphertext); "
        f"its timeline tab after: {q50:.2f} / {q99:.2f} ms"
    )


def run(url: str, events: int, cli_runs: int) -> None:
    print(f"filling {url.split('?')[0]} with {events:,} events ...", flush=True)
    seconds = fill(url, events)
    with Connection(parse_database_url(url)) as conn:
        ensure_schema(conn)
        head = head_position(conn)
        counts = dict(
            conn.fetchall(
                "SELECT customer_id, COUNT(*) FROM ledger_events "
                "WHERE customer_id IN ('busy-1', 'cust-1') GROUP BY customer_id"
            )
        )
    print(
        f"  {head:,} events in {seconds:.1f} s; busy-1 has {counts.get('busy-1', 0):,}, "
        f"cust-1 has {counts.get('cust-1', 0):,}"
    )

    print("(a) rebuild of all read models vs raw read of the same events")
    rebuilt = rebuild_in_child(url)
    rebuild_rate = rebuilt["events"] / rebuilt["seconds"]
    n, t = raw_read(url, parse_recorded_json)
    raw_rate = n / t
    m, u = raw_read(url, json.loads)
    loads_rate = m / u
    took = f"{rebuilt['seconds']:.1f} s; {rebuilt['wall_seconds']:.1f} s with process start"
    print(f"  rebuild --all        {rebuild_rate:>10,.0f} events/s  ({took})")
    for label, rate in (("raw read + pydantic", raw_rate), ("raw read + json", loads_rate)):
        print(f"  {label:<20} {rate:>10,.0f} events/s  ratio {rebuild_rate / rate:.2f}")
    print(f"  rebuild peak RSS     {rebuilt['peak_rss_mb']:>10,.0f} MB")

    print("(b) tab latency, ms (p50 / p99)")
    runs = 200
    print(f"  {'customer':<8} {'tab':<9} {'query':>15} {'query+check':>15} {'CLI':>17}")
    for customer in ("busy-1", "cust-1"):
        for tab in TAB_NAMES:
            q50, q99 = tab_latency(url, customer, tab, runs, check=False)
            c50, c99 = tab_latency(url, customer, tab, runs, check=True)
            cli = ""
            if tab == "timeline" and cli_runs:
                cli = "{:>7.1f} / {:>7.1f}".format(*cli_latency(url, customer, tab, cli_runs))
            line = f"{q50:>6.2f} / {q99:>6.2f} {c50:>6.2f} / {c99:>6.2f} {cli}"
            print(f"  {customer:<8} {tab:<9} {line}")

    print("(c) erasure latency")
    erasure_latency(url, "busy-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--db", help="URL of an empty store (default: a scratch store)")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="server for a scratch schema")
    parser.add_argument("--cli-runs", type=int, default=20, help="CLI calls per measurement")
    parser.add_argument(
        "--encryption-events",
        type=int,
        default=200_000,
        help="events for (d), rebuild with vs without encryption (0: skip)",
    )
    args = parser.parse_args()
    os.environ.setdefault("LEDGER_AUTO_MIGRATE", "1")
    if args.encryption_events:
        print("(d) the cost of encryption")
        encryption_cost(args.store, args.pg_url, args.encryption_events)
    if args.db:
        run(args.db, args.events, args.cli_runs)
        return
    with scratch_store(args.store, args.pg_url) as url:
        run(url, args.events, args.cli_runs)


if __name__ == "__main__":
    main()
