"""Tenants at scale (issue 24, item 6): the aggregate append rate with 1, 2 and 3
servers, and a soak of many tenants with workers killed under load.

    .venv/bin/python -m bench.tenants --part rate [--tenants 60] [--events 400]
                                      [--processes 3] [--batch 50]
    .venv/bin/python -m bench.tenants --part soak [--tenants 200] [--seconds 60]
                                      [--kill-every 5]

Set-up, both parts: `--servers` PostgreSQL databases on the local server stand in
for separate servers (`ledger_bench_s1`, ... created for the run and dropped
after), a tenant directory in a fresh schema of `--pg-url`'s database, and
`--tenants` tenants added with `ledger tenants add`'s service, round-robin over
the servers (each in its own schema).

(rate) For 1, 2 and 3 servers in turn: `--processes` appender processes (the CRM's
    writers) each take a share of the tenants and append `--events` events to
    each of them in batches of `--batch`, through the service layer as
    `ledger --tenant ID append` does. Printed: events/s over all tenants for
    each server count, and its ratio to one server. On this machine's 2 cores
    the appenders' Python, not the servers, is the limit, so the curve
    flattens; docs/scaling.md gives the arithmetic for a larger machine.

(soak) A Tansu broker on loopback (or `--bootstrap`), `--workers` projection
    workers and as many relay workers (`ledger projections|relay run --follow
    --tenants all`, real processes) sharing the tenants out; appender processes
    append `--events` events to every tenant in batches of `--batch` while, every
    `--kill-every` seconds, a random worker is killed with SIGKILL and a new one
    started in its place. Once the appends are done and every tenant's
    projections and relay have caught up, the workers are stopped and each
    tenant is checked: its read models equal a rebuild from its events (the
    reference fold), the topic holds every one of its events (tenant header,
    key TENANT/CUSTOMER_ID), in position order per customer, and its hash chain
    verifies. Printed: the counts, the kills, events published twice (the relay
    is at-least-once across a SIGKILL: a killed worker's unrecorded batch is
    sent again by its successor), and the time to catch up. Any lost event,
    order break, read-model difference or broken chain makes the exit status 1.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.common import DEFAULT_PG, _master_key_for_bench, generate_events
from ledger.config import parse_database_url


@dataclass(frozen=True)
class Deployment:
    """A scratch multi-tenant deployment: its directory and its tenants' ids."""

    directory_url: str
    servers: list[str]  # the databases standing in for servers, as store URLs
    tenants: list[str]


def _admin(pg_url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(parse_database_url(pg_url).conninfo(), autocommit=True)


def _with_database(pg_url: str, dbname: str, **query: str) -> str:
    parts = pg_url.split("?", 1)[0].rsplit("/", 1)[0]
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{parts}/{dbname}" + (f"?{extra}" if extra else "")


@contextmanager
def deployment(
    servers: int, tenants: int, pg_url: str = DEFAULT_PG, prefix: str = "ledger_bench"
) -> Iterator[Deployment]:
    """`servers` scratch databases, a directory and `tenants` tenants spread over
    them round-robin; all dropped afterwards."""
    from services.tenants import add_tenant, directory

    _master_key_for_bench()
    run = uuid.uuid4().hex[:8]
    names = [f"{prefix}_{run}_s{i + 1}" for i in range(servers)]
    schema = f"tenants_{run}"
    with _admin(pg_url) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    directory_url = f"{pg_url}{'&' if '?' in pg_url else '?'}schema={schema}"
    server_urls = [_with_database(pg_url, name) for name in names]
    ids = [f"shop-{i + 1:04d}" for i in range(tenants)]
    try:
        found = directory(directory_url)
        for i, tenant in enumerate(ids):
            add_tenant(found, tenant, server_urls[i % servers], None)
        yield Deployment(directory_url, server_urls, ids)
    finally:
        with _admin(pg_url) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tenant_events(index: int, count: int, customers: int = 20) -> list[str]:
    """A tenant's events as NDJSON lines: valid histories, different per tenant
    (the same event ids in every tenant: tenants never see each other's)."""
    return [json.dumps(e) for e in generate_events(count, customers, seed=index)]


# Tenants an appender process or a worker has open at once (a store's
# application and pool; a worker's tenant jobs), and a worker's threads: one
# PostgreSQL server here holds every "server" of the run, and its 100
# connections are shared by the appenders and the six workers.
OPEN_TENANTS = 1
WORKER_THREADS = 1


def append_share(
    directory_url: str, tenants: list[str], events: int, batch: int
) -> tuple[int, float]:
    """Append `events` events to each of `tenants`, `batch` at a time, through the
    service layer as `ledger --tenant ID append` does, `OPEN_TENANTS` tenants at a
    time (their batches interleaved): the events stored and the seconds taken."""
    from ledger.input import read_items
    from ledger.rights import ALLOW_ALL
    from services.appending import append_items
    from services.bootstrap import Services

    stored = 0
    started = time.perf_counter()
    for first in range(0, len(tenants), OPEN_TENANTS):
        group = tenants[first : first + OPEN_TENANTS]
        lines = {t: tenant_events(int(t.rsplit("-", 1)[1]), events) for t in group}
        kept = {t: Services(tenant_option=t, tenants_option=directory_url) for t in group}
        try:
            for start in range(0, events, batch):
                for tenant in group:
                    text = "\n".join(lines[tenant][start : start + batch]) + "\n"
                    app = kept[tenant].app()
                    report = append_items(app, ALLOW_ALL, read_items(io.StringIO(text)))
                    if not report.ok:
                        raise RuntimeError(f"{tenant}: {report.rejected[:1]}")
                    stored += report.appended
        finally:
            for services in kept.values():
                services.close()
    return stored, time.perf_counter() - started


def _append_worker(args: tuple[str, list[str], int, int, str]) -> tuple[int, float]:
    directory_url, tenants, events, batch, master_key = args
    os.environ["LEDGER_MASTER_KEY_FILE"] = master_key
    return append_share(directory_url, tenants, events, batch)


@contextmanager
def appenders(
    dep: Deployment, events: int, processes: int, batch: int
) -> Iterator[list[Future[tuple[int, float]]]]:
    """`processes` appender processes over every tenant of `dep`, started; their
    futures (events stored, seconds)."""
    shares = [dep.tenants[i::processes] for i in range(processes)]
    key = os.environ["LEDGER_MASTER_KEY_FILE"]
    work = [(dep.directory_url, share, events, batch, key) for share in shares if share]
    # An executor, not a Pool: a worker that dies fails the run instead of hanging it.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(work), mp_context=spawn) as pool:
        yield [pool.submit(_append_worker, args) for args in work]


def append_rate(dep: Deployment, events: int, processes: int, batch: int) -> tuple[int, float]:
    """Events stored and seconds taken by `processes` appender processes over
    every tenant of `dep`."""
    with appenders(dep, events, processes, batch) as pending:
        done = [future.result() for future in pending]
    # The processes ran side by side: the slowest one's time is the run's.
    return sum(n for n, _ in done), max(seconds for _, seconds in done)


WORKER_KINDS = ("projections", "relay")


class Workers:
    """`count` workers of each kind, restarted when killed."""

    def __init__(
        self,
        dep: Deployment,
        count: int,
        bootstrap: str,
        topic: str,
        claim_interval: float,
        log_dir: str,
    ) -> None:
        self.dep = dep
        self.bootstrap = bootstrap
        self.topic = topic
        self.claim_interval = claim_interval
        self.log_dir = log_dir
        self.kills = 0
        self.started = 0
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = [
            (kind, self._start(kind)) for kind in WORKER_KINDS for _ in range(count)
        ]

    def _start(self, kind: str) -> subprocess.Popen[bytes]:
        from tests.cli_runner import LEDGER

        self.started += 1
        extra = ["--bootstrap", self.bootstrap, "--topic", self.topic] if kind == "relay" else []
        path = os.path.join(self.log_dir, f"{kind}-{self.started}.log")
        with open(path, "wb") as log:  # the child keeps its own copy of the file
            return subprocess.Popen(
                [
                    LEDGER,
                    "--tenants-db",
                    self.dep.directory_url,
                    kind,
                    "run",
                    "--follow",
                    "--tenants",
                    "all",
                    "--claim-interval",
                    str(self.claim_interval),
                    # One PostgreSQL server here holds every "server" of the run.
                    "--open-tenants",
                    str(OPEN_TENANTS),
                    "--threads",
                    str(WORKER_THREADS),
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill_one(self, rng: random.Random) -> str:
        """SIGKILL a random worker and start another of its kind in its place."""
        index = rng.randrange(len(self.running))
        kind, process = self.running[index]
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        self.kills += 1
        self.running[index] = (kind, self._start(kind))
        return kind

    def stop(self) -> list[int]:
        """SIGTERM every worker; one still running after 60 s is killed (its
        code then is -9, which fails the run)."""
        for _, process in self.running:
            if process.poll() is None:
                process.terminate()
        codes = []
        for _, process in self.running:
            try:
                codes.append(process.wait(60))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait(10))
        return codes


def caught_up(dep: Deployment) -> bool:
    """Every tenant's slowest projection and its relay are at its head."""
    from services.metrics import read_tenants
    from services.tenants import directory, list_tenants

    entries = list_tenants(directory(dep.directory_url))
    by_server: dict[str, list[Any]] = {}
    for entry in entries:
        by_server.setdefault(entry.server, []).append(entry)
    readings = [r for group in by_server.values() for r in read_tenants(group)]
    return all(r.projection_lag == 0 and r.relayed == r.head for r in readings)


def check_tenant(url: str, records: list[Any], tenant: str) -> dict[str, Any]:
    """One tenant after the soak: read models against a rebuild, its messages on
    the topic, its chain."""
    from ledger.audit.verify import verify_chain
    from ledger.db import Connection
    from ledger.keystore.keyring import Keyring
    from services.operations import rebuild_projections
    from tests import projection_support
    from tests.relay_support import position_of, stored_positions

    live = projection_support.dump(url)
    with Connection(parse_database_url(url)) as conn:
        rebuild_projections(conn, ())
        chain = verify_chain(conn)
    rebuilt = projection_support.dump(url)
    stored = stored_positions(url)
    # The checks read sealed values: one keyring (a connection) per tenant,
    # closed before the next tenant's.
    Keyring.close_for(parse_database_url(url))
    mine = [r for r in records if dict(r.headers).get("tenant") == tenant.encode()]
    counts = Counter(position_of(r) for r in mine)
    first: dict[bytes, list[int]] = defaultdict(list)
    seen: set[int] = set()
    wrong_keys = 0
    for r in mine:
        position = position_of(r)
        if r.key != f"{tenant}/{stored.get(position)}".encode():
            wrong_keys += 1
        if position not in seen:
            seen.add(position)
            first[r.key].append(position)
    return {
        "tenant": tenant,
        "events": len(stored),
        "read_models_equal_rebuild": live == rebuilt,
        "lost": len(set(stored) - set(counts)),
        "published_twice": sum(1 for n in counts.values() if n > 1),
        "out_of_order": sum(1 for ps in first.values() if ps != sorted(ps)),
        "wrong_keys": wrong_keys,
        "chain_intact": chain.broken is None and chain.last_position == len(stored),
    }


def soak(
    servers: int,
    tenants: int,
    events: int,
    batch: int,
    workers: int,
    kill_every: float,
    claim_interval: float = 1.0,
    bootstrap: str | None = None,
    pg_url: str = DEFAULT_PG,
    catch_up_timeout: float = 600.0,
    seed: int = 24,
) -> dict[str, Any]:
    """The scale run: see the module's docstring, (soak). The result's `ok` says
    whether every check held."""
    from bench.relay import broker
    from services.tenants import directory, list_tenants
    from tests.relay_support import topic_reader

    rng = random.Random(seed)
    log_dir = tempfile.mkdtemp(prefix="bench-tenants-")
    topic = f"bench.tenants.{uuid.uuid4().hex[:8]}"
    with broker(bootstrap) as kafka, deployment(servers, tenants, pg_url) as dep:
        crew = Workers(dep, workers, kafka, topic, claim_interval, log_dir)
        started = time.perf_counter()
        try:
            with appenders(dep, events, 2, batch) as pending:
                while wait(pending, timeout=kill_every).not_done:
                    crew.kill_one(rng)
                for future in pending:
                    future.result()  # an appender's failure fails the run
            appended_s = time.perf_counter() - started
            deadline = time.monotonic() + catch_up_timeout
            while not caught_up(dep):
                if time.monotonic() > deadline:
                    raise SystemExit(f"not caught up in {catch_up_timeout} s; logs in {log_dir}")
                time.sleep(0.5)
            caught_up_s = time.perf_counter() - started
        finally:
            codes = crew.stop()
        with topic_reader(kafka, topic) as reader:
            total = tenants * events
            reader.read_until(lambda records: len(records) >= total, 120)
            reader.drain()
            records = list(reader.records)
        stores = {t.tenant: t.db for t in list_tenants(directory(dep.directory_url))}
        checks = [check_tenant(stores[t], records, t) for t in dep.tenants]
    bad = [
        c
        for c in checks
        if c["lost"]
        or c["out_of_order"]
        or c["wrong_keys"]
        or not c["read_models_equal_rebuild"]
        or not c["chain_intact"]
    ]
    return {
        "part": "soak",
        "servers": servers,
        "tenants": tenants,
        "events": sum(c["events"] for c in checks),
        "messages": len(records),
        "published_twice": sum(c["published_twice"] for c in checks),
        "workers": {"projections": workers, "relay": workers},
        "kills": crew.kills,
        "appended_s": round(appended_s, 1),
        "caught_up_s": round(caught_up_s, 1),
        "stop_codes": codes,
        "failed_tenants": bad[:5],
        "ok": not bad and all(code == 0 for code in codes),
        "logs": log_dir,
        "load": os.getloadavg(),
    }


def part_rate(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for servers in (1, 2, 3):
        with deployment(servers, args.tenants, args.pg_url) as dep:
            stored, seconds = append_rate(dep, args.events, args.processes, args.batch)
        rows.append(
            {
                "servers": servers,
                "events": stored,
                "seconds": round(seconds, 2),
                "events_per_s": round(stored / seconds),
            }
        )
    base = rows[0]["events_per_s"]
    for row in rows:
        row["ratio"] = round(row["events_per_s"] / base, 2)
    return {
        "part": "rate",
        "tenants": args.tenants,
        "processes": args.processes,
        "batch": args.batch,
        "rows": rows,
        "load": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["rate", "soak"], default="rate")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--tenants", type=int, default=60)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--claim-interval", type=float, default=1.0)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--format", choices=["human", "json"], default="human")
    args = parser.parse_args()
    # Stopped by a signal, the run still stops its workers and drops its databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.part == "soak":
        result = soak(
            args.servers,
            args.tenants,
            args.events,
            args.batch,
            args.workers,
            args.kill_every,
            args.claim_interval,
            args.bootstrap,
            args.pg_url,
        )
        print(json.dumps(result, indent=None if args.format == "json" else 2))
        raise SystemExit(0 if result["ok"] else 1)
    result = part_rate(args)
    if args.format == "json":
        print(json.dumps(result))
        return
    print(
        f"{args.tenants} tenants, {args.processes} appender processes, "
        f"batches of {args.batch}; load {result['load']}"
    )
    print("servers  events  seconds  events/s  vs 1 server")
    for row in result["rows"]:
        print(
            f"{row['servers']:>7}  {row['events']:>6}  {row['seconds']:>7}  "
            f"{row['events_per_s']:>8}  {row['ratio']:>10}x"
        )


if __name__ == "__main__":
    main()
