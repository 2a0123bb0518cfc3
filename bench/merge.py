"""Merge benchmark: merging a customer with 100,000 events and a small one, and
undoing it, against reading the unmerged customer's first page.

    .venv/bin/python -m bench.merge [--events 100000] [--store sqlite|postgresql]
                                    [--cycles 5] [--runs 100] [--db URL]

Fills an empty store as bench.page does (one customer of `--events` events of
every kind, one small customer of 80 events, 500 others like it, not measured)
and brings the read models up to date. Then, `--cycles` times each way (the big
customer absorbing the small one, and the small one absorbing the big one):

- preview: `preview_merge` (read-your-writes check, the rules, the cards'
  conflicts, the items per tab that move, shared contacts), `--runs` times;
- merge: `merge_customers` as every door calls it (the preview again, then the
  append of `customer.merged` and `customer.absorbed`), once a cycle;
- catch-up: bringing every read model up to date after the merge (`catch_up_live`,
  what the next read would do), measured apart from the reads;
- after the merge, the priority customer's first timeline page (`tab_answer`) and
  its tab counts as the card header reads them (capped at 1,000), `--runs` times;
- undo: `unmerge_customers`, and the catch-up after it.

The raw baseline, in the same run: the big customer's first timeline page and
tab counts before any merge, and a one-event append through the same service
(`append_items`). Goal (spec): a 100,000-event customer merges in under a second.

`fill` writes rows without the append path's snapshots (every 500 events of a
stream); the two customers' snapshots are taken after it, untimed, as a real
ledger would hold them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import DEFAULT_PG, scratch_store
from bench.page import BIG, OTHERS, SMALL, SMALL_EVENTS, events
from bench.projections import fill
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.input import InputItem
from ledger.rights import ALLOW_ALL
from projections import registry
from projections.runner import catch_up_live
from projections.schema import ensure_schema
from projections.tabs import tab_counts
from services.appending import append_items
from services.bootstrap import prepare_store
from services.merging import (
    MergeRequest,
    UnmergeRequest,
    merge_customers,
    preview_merge,
    unmerge_customers,
)
from services.tabs import CARD_COUNT_CAP, tab_answer, tab_request

ALL = [registry.get(name) for name in registry.NAMES]


def _ms(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 (the max below 100 samples) in ms."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def _timed(call: Callable[[], Any], runs: int, warm: int = 3) -> tuple[float, float]:
    for _ in range(warm):  # caches and prepared statements
        call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return _ms(samples)


def _once(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _reads(conn: Connection, customer: str, runs: int) -> dict[str, tuple[float, float]]:
    request = tab_request(customer, "timeline")
    return {
        "first page": _timed(lambda: tab_answer(conn, request), runs),
        "tab counts": _timed(lambda: tab_counts(conn, customer, CARD_COUNT_CAP), runs),
    }


def _append_one(app: LedgerApplication, n: int) -> None:
    item = {
        "type": "note.added",
        "customer_id": BIG,
        "occurred_at": "2026-12-01T10:00:00Z",
        "actor": {"kind": "user", "id": "u-1"},
        "data": {"note_id": f"bench-note-{n}", "text": "one more"},
    }
    report = append_items(app, ALLOW_ALL, [InputItem(1, json.dumps(item))])
    assert report.ok, report.rejected


def _row(label: str, p50: float, p99: float | None, base: float | None) -> None:
    tail = f"{p99:>9.2f}" if p99 is not None else f"{'':>9}"
    ratio = f"{p50 / base:>8.2f}" if base else f"{'':>8}"
    print(f"  {label:<44} {p50:>9.2f} {tail} {ratio}", flush=True)


def direction(
    app: LedgerApplication,
    conn: Connection,
    priority: str,
    absorbed: str,
    cycles: int,
    runs: int,
    base: dict[str, float],
) -> None:
    merge = MergeRequest(priority, (absorbed,), "u-1", "bench", confirm=True)
    undo = UnmergeRequest(priority, absorbed, "u-1", "bench")
    outcome = preview_merge(conn, merge)
    moved = sum(outcome.moved.values())
    print(
        f"\n{absorbed} into {priority} ({moved:,} items move), ms: p50, p99 (max of the cycles), "
        "p50 / baseline (the append; a read: the same read unmerged)"
    )
    preview = _timed(lambda: preview_merge(conn, merge), runs)
    merging: list[float] = []
    caught: list[float] = []
    undoing: list[float] = []
    caught_undo: list[float] = []
    after: dict[str, list[float]] = {"first page": [], "tab counts": []}
    after_p99: dict[str, list[float]] = {"first page": [], "tab counts": []}
    for _ in range(cycles):
        merging.append(_once(lambda: merge_customers(app, conn, ALLOW_ALL, merge)))
        caught.append(_once(lambda: catch_up_live(conn, ALL)))
        for what, (p50, p99) in _reads(conn, priority, runs).items():
            after[what].append(p50)
            after_p99[what].append(p99)
        undoing.append(_once(lambda: unmerge_customers(app, conn, ALLOW_ALL, undo)))
        caught_undo.append(_once(lambda: catch_up_live(conn, ALL)))
    append = base["append"]
    _row(f"preview (p50 / {BIG}'s first page)", *preview, base[f"{BIG} first page"])
    for label, samples in [
        ("merge (preview + append), median of cycles", merging),
        ("  catch-up after the merge", caught),
        ("undo (append)", undoing),
        ("  catch-up after the undo", caught_undo),
    ]:
        _row(label, statistics.median(samples) * 1000, max(samples) * 1000, append)
    for what in ("first page", "tab counts"):
        _row(
            f"{priority}'s {what} after the merge",
            statistics.median(after[what]),
            max(after_p99[what]),
            base[f"{BIG} {what}"],
        )


def run(url: str, count: int, cycles: int, runs: int) -> None:
    small = (1 + OTHERS) * SMALL_EVENTS
    print(f"filling {url.split('?')[0]} with {count:,} + {small:,} events ...", flush=True)
    fill(url, count + small, events(count))
    app = LedgerApplication(parse_database_url(url))
    try:
        with Connection(app.url) as conn:
            # `fill` skips the append path, and with it the snapshots it takes every
            # 500 events: take the ones a real ledger would have, untimed (without
            # them every append to the big customer replays its 100,000 events).
            for customer in (BIG, SMALL):
                state, _ = app.load_customer(conn, customer)
                app.store_snapshot(conn, state)
            ensure_schema(conn)
            started = time.perf_counter()
            catch_up_live(conn, ALL)
            print(f"  read models up to date in {time.perf_counter() - started:.1f} s")
            if conn.kind == "postgresql":
                # What autovacuum soon does after a bulk load (see bench.page).
                for projection in ALL:
                    for spec in projection.tables:
                        conn.execute(f"ANALYZE {spec.name}")
            prepare_store(conn)
            print(f"load average {os.getloadavg()[0]:.2f}")
            print("\nbaseline, unmerged, ms: p50, p99")
            base: dict[str, float] = {}
            for customer in (BIG, SMALL):
                for what, (p50, p99) in _reads(conn, customer, runs).items():
                    base[f"{customer} {what}"] = p50
                    _row(f"{customer}'s {what}", p50, p99, None)
            appends = []
            for n in range(runs + 3):
                took = _once(lambda: _append_one(app, n))  # noqa: B023 (called at once)
                catch_up_live(conn, ALL)  # as the merge finds them: current
                if n >= 3:
                    appends.append(took)
            p50, p99 = _ms(appends)
            base["append"] = p50
            _row(f"append one event to {BIG} (append_items)", p50, p99, None)
            direction(app, conn, BIG, SMALL, cycles, runs, base)
            direction(app, conn, SMALL, BIG, cycles, runs, base)
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--cycles", type=int, default=5, help="merges and undos each way")
    parser.add_argument("--runs", type=int, default=100, help="reads and previews timed")
    parser.add_argument("--db", help="URL of an empty store (default: a scratch one)")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="server for the scratch schema")
    args = parser.parse_args()
    if args.db:
        run(args.db, args.events, args.cycles, args.runs)
        return
    with scratch_store(args.store, args.pg_url) as url:
        run(url, args.events, args.cycles, args.runs)


if __name__ == "__main__":
    main()
