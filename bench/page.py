"""Card page benchmark: server time to render `GET /customers/{id}` for a small
customer and for one with 100,000 events, each tab, against the JSON API's
answer for the same tab (the page's raw baseline: same read, no HTML), and
each tab's first page read in process.

    .venv/bin/python -m bench.page [--events 100000] [--store sqlite|postgresql]
                                   [--runs 200] [--db URL]

Fills an empty store with one customer of `--events` events (every kind of
interaction, in short valid episodes as in bench.projections), one small
customer of about 80 events and 500 others like it (not measured), brings the
read models up to date, starts a real `ledger serve` on a loopback port and
requests each tab `--runs` times over one keep-alive connection. Times are
measured by the client: they include loopback HTTP (about 0.5 ms here).
Goal: p99 under 50 ms for both customers.

First, in this process, each tab's first page as the API and `ledger tab` read
it (`tab_answer`: the read-your-writes check, the query, decrypting the cells
shown, the model), `--runs` times per tab: the small customer's, the big one's
at the same page size (its history is all that differs), and the big one's
full page (100 items; timeline 50). Goal (issue 13): p99 under 10 ms, within
2x of the small customer's.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import DEFAULT_PG, scratch_store
from bench.projections import _Customer, fill
from ledger.config import parse_database_url
from ledger.db import Connection
from projections import registry
from projections.runner import catch_up_live
from projections.schema import ensure_schema
from services.tabs import tab_answer, tab_request

LEDGER = str(Path(sys.executable).parent / "ledger")
TABS = ("timeline", "tasks", "visits", "segments", "chats", "emails", "orders", "card")
BIG, SMALL = "big-1", "small-1"
SMALL_EVENTS = 80
# Other customers of SMALL_EVENTS events each, not measured: PostgreSQL plans a
# prepared query for the average customer, and with the big and the small one
# alone the "average" holds half of 100,000 rows (a generic plan that scans the
# table for every customer; 10 ms for the small one's card header, not 1.4).
OTHERS = 500


def events(big: int) -> Iterator[tuple[str, str, dict[str, Any], datetime]]:
    rng = random.Random(11)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    others = [(f"other-{i}", SMALL_EVENTS) for i in range(OTHERS)]
    for cid, count in ((BIG, big), (SMALL, SMALL_EVENTS), *others):
        customer = _Customer(cid, rng, start)
        for _ in range(count):
            event_type, data, occurred = customer.next()
            yield cid, event_type, data, occurred


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed(client: httpx.Client, path: str, runs: int) -> tuple[float, float, int]:
    for _ in range(5):  # warm caches and the connection pool
        client.get(path).raise_for_status()
    samples = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
        size = len(response.content)
    p50, p99 = _percentiles(samples)
    return p50, p99, size


def _timed_answer(conn: Connection, customer: str, tab: str, limit: int | None, runs: int) -> Any:
    request = tab_request(customer, tab, limit=limit)
    for _ in range(5):  # warm caches and prepared statements
        answer = tab_answer(conn, request)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        tab_answer(conn, request)
        samples.append(time.perf_counter() - started)
    return (*_percentiles(samples), len(answer.items))


def in_process(url: str, runs: int) -> None:
    """Each tab's first page; the small customer's tabs hold a few items, so the big
    one is also read at the same page size: what its history alone costs."""
    print("first page in process (tab_answer), ms p50 / p99 (items on the page)")
    print(
        f"  {'tab':<9} {SMALL:>20} {BIG + ' same size':>22} {BIG + ' full page':>22} "
        f"{'same size / small: p50 p99':>27}"
    )
    with Connection(parse_database_url(url)) as conn:
        for tab in TABS:
            s50, s99, n = _timed_answer(conn, SMALL, tab, None, runs)
            b50, b99, m = _timed_answer(conn, BIG, tab, max(n, 1), runs)
            f50, f99, k = _timed_answer(conn, BIG, tab, None, runs)
            print(
                f"  {tab:<9} {s50:>6.2f} / {s99:>6.2f} ({n:>3}) {b50:>6.2f} / {b99:>6.2f} ({m:>3}) "
                f"{f50:>6.2f} / {f99:>6.2f} ({k:>3}) {b50 / s50:>13.2f} {b99 / s99:>6.2f}",
                flush=True,
            )


def run(url: str, count: int, runs: int, http: bool = True) -> None:
    small = (1 + OTHERS) * SMALL_EVENTS
    print(f"filling {url.split('?')[0]} with {count:,} + {small:,} events ...", flush=True)
    fill(url, count + small, events(count))
    with Connection(parse_database_url(url)) as conn:
        ensure_schema(conn)
        started = time.perf_counter()
        catch_up_live(conn, [registry.get(name) for name in registry.NAMES])
        print(f"  read models up to date in {time.perf_counter() - started:.1f} s")
        if conn.kind == "postgresql":
            # The statistics autovacuum gathers within a minute of a bulk load:
            # without them the planner expects a few hundred rows per customer and
            # counts the big one's with a bitmap scan of all 100,000 (12 ms, not 4).
            for name in registry.NAMES:
                for spec in registry.get(name).tables:
                    conn.execute(f"ANALYZE {spec.name}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    in_process(url, runs)
    if not http:
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        env = {**os.environ, "LEDGER_DATABASE_URL": url}
        env.pop("LEDGER_ACCESS_FILE", None)
        with log.open("w") as out:
            server = subprocess.Popen(
                [LEDGER, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=60) as client:
                _wait(client, server, log)
                print("server time, ms (p50 / p99), client-measured over loopback")
                header = f"{'customer':<9} {'tab':<9} {'page':>17} {'JSON API':>17} {'page KB':>8}"
                print("  " + header)
                for customer in (SMALL, BIG):
                    for tab in TABS:
                        p50, p99, size = timed(client, f"/customers/{customer}?tab={tab}", runs)
                        a50, a99, _ = timed(client, f"/v1/customers/{customer}/tabs/{tab}", runs)
                        print(
                            f"  {customer:<9} {tab:<9} {p50:>7.1f} / {p99:>7.1f} "
                            f"{a50:>7.1f} / {a99:>7.1f} {size / 1024:>8.0f}",
                            flush=True,
                        )
        finally:
            server.terminate()
            server.wait(30)


def _wait(client: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"ledger serve exited:\n{log.read_text()}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("ledger serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--db", help="URL of an empty store (default: a scratch one)")
    parser.add_argument("--no-http", action="store_true", help="the in-process reads only")
    args = parser.parse_args()
    if args.db:
        run(args.db, args.events, args.runs, not args.no_http)
        return
    with scratch_store(args.store, DEFAULT_PG) as url:
        run(url, args.events, args.runs, not args.no_http)


if __name__ == "__main__":
    main()
