"""Audit trail benchmark: subject history and chain verification at scale.

    .venv/bin/python -m bench.audit [--events 1000000] [--store sqlite|postgresql] [--db URL]

Fills an empty store with N events (default 1,000,000): one order with N/10
events spread through the whole table, one order with 10 events, and filler
over 1,000 customers with a subject each (notes, visits, calls, SMS) and some
card changes. Rows go in through the ledger's own recorder (`write_session`,
which assigns positions and the hash chain) but skip validation, which is not
what is measured here. Then, in process:

- history of the big subject (ndjson, written to a discarding sink): events/s
  and peak Python memory (tracemalloc, in a separate pass);
- `verify` over every event: events/s and peak memory;
- history latency of the 10-event order and the 11-event customer, measured
  when the table holds N/10 events and again at N, to show it does not grow
  with the table.

`--db` takes a URL of an empty store; without it a scratch store of `--store`
is created and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import DEFAULT_PG, scratch_store
from ledger.application import LedgerApplication
from ledger.audit.history import HistoryFilter, Selector, iter_history
from ledger.audit.render import write_history
from ledger.audit.verify import verify_chain
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.reading import head_position
from ledger.stores.rows import LedgerStoredEvent

BATCH = 5000
FILLER_CUSTOMERS = 1000
BIG = Selector("order", "o-big")
SMALL = Selector("order", "o-small")
SMALL_CUSTOMER = Selector("customer", "c-small")
START = datetime(2026, 1, 1, tzinfo=UTC)


class _Sink:
    def write(self, text: str, /) -> int:
        return len(text)


class _Streams:
    """Stream versions per customer, and the envelope of each generated event."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.n = 0

    def event(self, customer: str, typ: str, data: dict[str, Any]) -> LedgerStoredEvent:
        self.n += 1
        version = self.versions.get(customer, 0) + 1
        self.versions[customer] = version
        event_id = str(uuid.UUID(int=self.n))
        at = START + timedelta(seconds=self.n)
        state = {
            "event_id": event_id,
            "recorded_at": at.isoformat().replace("+00:00", "Z"),
            "schema_version": 1,
            "type": typ,
            "customer_id": customer,
            "occurred_at": at.isoformat(),
            "actor": {"kind": "user", "id": f"u-{self.n % 7}", "name": "Bench"},
            "source": "bench",
            "data": data,
        }
        subject_key = {"order": "order_id", "note": "note_id", "visit": "visit_id"}
        kind = typ.split(".")[0]
        subject = f"{kind}:{data[subject_key[kind]]}" if kind in subject_key else None
        return LedgerStoredEvent(
            originator_id=customer_stream_id(customer),
            originator_version=version,
            topic=typ,
            state=json.dumps(state, separators=(",", ":")).encode(),
            event_id=event_id,
            customer_id=customer,
            subject=subject,
            creates_subject=typ in ("order.created", "visit.recorded"),
        )


def _generate(total: int, seed: int = 7) -> Iterator[LedgerStoredEvent]:
    rng = random.Random(seed)
    s = _Streams()
    big_total = max(total // 10, 2)
    yield s.event("c-small", "customer.created", {"card": {"name": "Small"}})
    yield s.event("c-small", "order.created", {"order_id": "o-small", "status": "new"})
    for i in range(9):
        change = {"field": "status", "old": f"s{i}", "new": f"s{i + 1}"}
        yield s.event("c-small", "order.changed", {"order_id": "o-small", "changes": [change]})
    yield s.event("c-big", "customer.created", {"card": {"name": "Big"}})
    yield s.event("c-big", "order.created", {"order_id": "o-big", "status": "new"})
    big_left = big_total - 1
    made = 13
    created: set[str] = set()
    while made < total:
        # Spread the big subject evenly through the table, as a busy order would be.
        if big_left and rng.random() < big_left / (total - made):
            big_left -= 1
            change = {"field": "total", "old": str(made), "new": str(made + 1)}
            yield s.event("c-big", "order.changed", {"order_id": "o-big", "changes": [change]})
        else:
            customer = f"c-{rng.randrange(FILLER_CUSTOMERS):04d}"
            if customer not in created:
                created.add(customer)
                yield s.event(customer, "customer.created", {"card": {"name": customer}})
            else:
                k = rng.random()
                if k < 0.4:
                    yield s.event(customer, "note.added", {"note_id": f"n{made}", "text": "ok"})
                elif k < 0.8:
                    data = {
                        "visit_id": f"v{made}",
                        "source": "google",
                        "channel": "search",
                        "duration_s": rng.randint(1, 600),
                    }
                    yield s.event(customer, "visit.recorded", data)
                else:
                    change = {"field": "phone", "old": "+1", "new": "+2"}
                    yield s.event(customer, "customer.card_changed", {"changes": [change]})
        made += 1


def _fill(app: LedgerApplication, events: Iterator[LedgerStoredEvent], count: int) -> int:
    written = 0
    batch: list[LedgerStoredEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) == BATCH or written + len(batch) == count:
            with app.ledger_recorder.write_session() as session:
                session.insert(batch)
            written += len(batch)
            batch = []
            if written >= count:
                break
    return written


def _timed(fn: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - started


def _peak(fn: Callable[[], int]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def _latency_ms(conn: Connection, selector: Selector, runs: int = 200) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        write_history(iter_history(conn, selector), "json", _Sink(), selector, HistoryFilter())
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def run(url: str, total: int) -> dict[str, Any]:
    db = parse_database_url(url)
    app = LedgerApplication(db, create_tables=True)
    conn = Connection(db)
    results: dict[str, Any] = {"store": db.kind, "events": total}
    try:
        if head_position(conn):
            raise SystemExit(f"{db.display()} is not empty; the benchmark needs an empty store")
        events = _generate(total)
        first = max(total // 10, 13)
        started = time.perf_counter()
        _fill(app, events, first)
        small_at_tenth = _latency_ms(conn, SMALL)
        cust_at_tenth = _latency_ms(conn, SMALL_CUSTOMER)
        _fill(app, events, total - first)
        results["fill_s"] = round(time.perf_counter() - started, 1)
        if db.kind == "postgresql":
            conn.execute("ANALYZE ledger_events")

        def big_history() -> int:
            return write_history(iter_history(conn, BIG), "ndjson", _Sink(), BIG, HistoryFilter())

        n, secs = _timed(big_history)
        results["history_big"] = {
            "events": n,
            "seconds": round(secs, 2),
            "events_per_s": round(n / secs),
            "peak_mb": round(_peak(big_history), 1),
        }

        def verify_all() -> int:
            report = verify_chain(conn)
            assert report.intact, report.broken
            return report.checked

        n, secs = _timed(verify_all)
        results["verify"] = {
            "events": n,
            "seconds": round(secs, 2),
            "events_per_s": round(n / secs),
            "peak_mb": round(_peak(verify_all), 1),
        }
        small_at_full = _latency_ms(conn, SMALL)
        cust_at_full = _latency_ms(conn, SMALL_CUSTOMER)
        results["history_small_ms"] = {
            "order_10_events": {
                f"at_{first}": _ms(small_at_tenth),
                f"at_{total}": _ms(small_at_full),
            },
            "customer_11_events": {
                f"at_{first}": _ms(cust_at_tenth),
                f"at_{total}": _ms(cust_at_full),
            },
        }
    finally:
        conn.close()
        app.close()
    return results


def _ms(pair: tuple[float, float]) -> dict[str, float]:
    return {"median": round(pair[0], 2), "p95": round(pair[1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--db", metavar="URL", help="an empty store to use instead of a scratch one"
    )
    parser.add_argument(
        "--pg", metavar="URL", default=DEFAULT_PG, help="server for --store postgresql"
    )
    args = parser.parse_args()
    if args.events < 100:
        parser.error("--events must be at least 100")
    if args.db:
        results = run(args.db, args.events)
    else:
        with scratch_store(args.store, args.pg) as url:
            results = run(url, args.events)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
