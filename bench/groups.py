"""Group commit in process: one-event appends from many threads through
`AppendGroups` (what `POST /v1/events` does with a one-event body, without HTTP),
against the same events in one `append_items` call, each on an empty store.

    .venv/bin/python -m bench.groups [--store postgresql|sqlite|both] [--events 4000]
                                     [--threads 32] [--repeats 3]

Events as bench.http (c) sends them (customers created first, their events from
one thread in order, customers spread over the threads). Prints the median rate
of each, their ratio, the events per committed group and the load average.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import threading
import time
from typing import Any

from bench.common import DEFAULT_PG, scratch_store
from bench.http import bodies
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.grouping import AppendGroups, GroupStore
from ledger.input import read_items
from ledger.rights import ALLOW_ALL
from services.appending import append_items, append_with


def grouped(url: str, lines: list[str], threads: int) -> tuple[float, float]:
    """Events/s and events per group, `threads` threads appending one event a call."""
    shares: list[list[str]] = [[] for _ in range(threads)]
    owners: dict[str, int] = {}
    for line in lines:
        customer = json.loads(line)["customer_id"]
        shares[owners.setdefault(customer, len(owners) % threads)].append(line)
    app = LedgerApplication(parse_database_url(url))
    groups = AppendGroups(GroupStore(app, lambda: ALLOW_ALL, append_with))
    start = threading.Barrier(threads + 1)

    def run(share: list[str]) -> None:
        start.wait()
        for line in share:
            report = groups.append_one(line)
            assert report.appended == 1, report

    workers = [threading.Thread(target=run, args=(s,)) for s in shares]
    for w in workers:
        w.start()
    start.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    count = groups.groups
    groups.close()
    app.close()
    return len(lines) / elapsed, len(lines) / max(count, 1)


def batched(url: str, lines: list[str]) -> float:
    app = LedgerApplication(parse_database_url(url))
    started = time.perf_counter()
    report = append_items(app, ALLOW_ALL, read_items(io.StringIO("\n".join(lines) + "\n")))
    elapsed = time.perf_counter() - started
    assert report.appended == len(lines), report
    app.close()
    return len(lines) / elapsed


def run(store: str, args: argparse.Namespace) -> dict[str, Any]:
    lines = "".join(bodies(max(1, args.events // 1000))).splitlines()
    rates, sizes, batches = [], [], []
    for _ in range(args.repeats):
        with scratch_store(store, args.pg_url) as url:
            rate, size = grouped(url, lines, args.threads)
        rates.append(rate)
        sizes.append(size)
        with scratch_store(store, args.pg_url) as url:
            batches.append(batched(url, lines))
    rate, batch = statistics.median(rates), statistics.median(batches)
    return {
        "store": store,
        "events": len(lines),
        "threads": args.threads,
        "grouped_events_per_s": round(rate),
        "one_batch_events_per_s": round(batch),
        "grouped_vs_batch": round(rate / batch, 2),
        "events_per_group": round(statistics.median(sizes), 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="postgresql")
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    for store in stores:
        print(json.dumps(run(store, args)), flush=True)


if __name__ == "__main__":
    main()
