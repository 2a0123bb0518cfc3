"""Append throughput: `ledger append`'s code path against raw inserts of the same rows.

    .venv/bin/python -m bench.append [--events 100000] [--store sqlite|postgresql|both]

Generates N events, imports them through the same path as `ledger append`
(streamed NDJSON, validation, rules, batched all-or-nothing save), then in the
same run inserts the very same stored rows into a scratch table raw (SQLite:
executemany; PostgreSQL: COPY), 1,000 rows a transaction, and prints events/s
for both and the ratio; and the same import into another scratch store with the
mapper's encryption of personal values switched off: the cost of encryption.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_PG, generate_events, scratch_store, write_ndjson
from ledger.appending import Appender
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.input import read_items
from ledger.stores.rows import EVENT_COLUMNS

BATCH = 1000


def ledger_append(url: str, path: Path, *, encrypt: bool = True) -> tuple[int, float]:
    app = LedgerApplication(parse_database_url(url))
    if not encrypt:
        # The baseline: the mapper stores personal values as given (bench only).
        app.mapper.keyring = None  # type: ignore[attr-defined]
    try:
        with Appender(app, batch_size=BATCH) as appender, path.open() as f:
            started = time.perf_counter()
            report = appender.append(read_items(f))
            elapsed = time.perf_counter() - started
    finally:
        app.close()
    assert report.ok, report.rejected[:3]
    return report.appended, elapsed


def raw_insert(url: str) -> tuple[int, float]:
    conn = Connection(parse_database_url(url))
    cols = ", ".join(EVENT_COLUMNS)
    rows = conn.fetchall(f"SELECT {cols} FROM ledger_events ORDER BY notification_id")
    conn.execute("CREATE TABLE raw_events AS SELECT * FROM ledger_events WHERE 1 = 0")
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        chunk = rows[i : i + BATCH]
        with conn.transaction():
            if conn.kind == "sqlite":
                marks = ",".join("?" * len(EVENT_COLUMNS))
                conn.raw.executemany(f"INSERT INTO raw_events ({cols}) VALUES ({marks})", chunk)
            else:
                with (
                    conn.raw.cursor() as cur,
                    cur.copy(f"COPY raw_events ({cols}) FROM STDIN") as cp,
                ):
                    for row in chunk:
                        cp.write_row(row)
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows), elapsed


def run(store: str, events: int, customers: int, pg_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, scratch_store(store, pg_url) as url:
        path = Path(tmp) / "events.ndjson"
        write_ndjson(generate_events(events, customers), path)
        with scratch_store(store, pg_url) as plain_url:
            plain_n, t_plain = ledger_append(plain_url, path, encrypt=False)
        n, t_ledger = ledger_append(url, path)
        m, t_raw = raw_insert(url)
        assert n == m == plain_n
        ledger_rate, raw_rate, plain_rate = n / t_ledger, m / t_raw, n / t_plain
        baseline = "executemany" if store == "sqlite" else "COPY"
        print(
            f"{store:<10} ledger append {ledger_rate:>10,.0f} events/s   "
            f"raw {baseline} {raw_rate:>10,.0f} rows/s   ratio {ledger_rate / raw_rate:.2f}\n"
            f"{'':<10} without encryption {plain_rate:>7,.0f} events/s   "
            f"encryption costs {1 - ledger_rate / plain_rate:.0%}"
        )
        return {
            "store": store,
            "events": n,
            "ledger": ledger_rate,
            "raw": raw_rate,
            "plain": plain_rate,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG, help="PostgreSQL server for the scratch schema"
    )
    args = parser.parse_args()
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    print(f"{args.events:,} events over {args.customers:,} customers, batches of {BATCH}")
    for store in stores:
        run(store, args.events, args.customers, args.pg_url)


if __name__ == "__main__":
    main()
