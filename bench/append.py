"""Append throughput: `ledger append`'s code path against raw inserts of the same rows.

    .venv/bin/python -m bench.append [--events 100000] [--store sqlite|postgresql|both]

Generates N events, imports them through the same path as `ledger append`
(streamed NDJSON, validation, rules, batched all-or-nothing save), then in the
same run inserts the very same stored rows raw (SQLite: executemany;
PostgreSQL: COPY) twice: into an empty events table with every index and
trigger the ledger creates, in one transaction (the ceiling with our
guarantees), and into a bare table without indexes, 1,000 rows a transaction
(the database's raw write rate). Prints the three rates and their ratios, and
the rate of the same import with encryption of personal values switched off.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import DEFAULT_PG, generate_events, scratch_store, write_ndjson
from ledger.appending.appender import Appender
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.input import read_items
from ledger.stores.layout import EVENT_COLUMNS
from ledger.stores.postgres import copy_rows, copy_statement, copy_types

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


def stored_rows(url: str) -> list[tuple[Any, ...]]:
    with Connection(parse_database_url(url)) as conn:
        cols = ", ".join(EVENT_COLUMNS)
        return conn.fetchall(f"SELECT {cols} FROM ledger_events ORDER BY notification_id")


def raw_insert(url: str, table: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    """Seconds to insert `rows` into `table`, `batch` rows a transaction (SQLite:
    executemany; PostgreSQL: binary COPY)."""
    cols = ", ".join(EVENT_COLUMNS)
    with Connection(parse_database_url(url)) as conn:
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            with conn.transaction():
                if conn.kind == "sqlite":
                    marks = ",".join("?" * len(EVENT_COLUMNS))
                    conn.raw.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", chunk)
                else:
                    # The same binary COPY the ledger's write session uses.
                    with conn.raw.cursor() as cur:
                        statement = copy_statement(conn.url.schema, table)
                        copy_rows(cur, statement, copy_types("uuid"), chunk)
        return time.perf_counter() - started


def run(store: str, events: int, customers: int, pg_url: str, repeat: int) -> dict[str, Any]:
    """Every figure `repeat` times, interleaved (the machine's load drifts), and
    the medians; the ratios are of medians measured in the same run."""
    plain: list[float] = []
    ledger: list[float] = []
    indexed: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.ndjson"
        write_ndjson(generate_events(events, customers), path)
        for _ in range(repeat):
            # The cost of encrypting personal values: the same import, sealing off.
            with scratch_store(store, pg_url) as plain_url:
                _, t_plain = ledger_append(plain_url, path, encrypt=False)
            with scratch_store(store, pg_url) as url:
                n, t_ledger = ledger_append(url, path)
                rows = stored_rows(url)
                assert n == len(rows)
                # The ceiling with our guarantees: the same rows into a second, empty
                # events table with every index, constraint and trigger the ledger
                # creates, in one transaction (what an all-or-nothing import is).
                with scratch_store(store, pg_url) as indexed_url:
                    LedgerApplication(parse_database_url(indexed_url), create_tables=True).close()
                    t_indexed = raw_insert(indexed_url, "ledger_events", rows, len(rows))
                # A table without indexes, BATCH rows a transaction: the raw write rate.
                with Connection(parse_database_url(url)) as conn:
                    conn.execute(
                        "CREATE TABLE raw_events AS SELECT * FROM ledger_events WHERE 1 = 0"
                    )
                t_bare = raw_insert(url, "raw_events", rows, BATCH)
            plain.append(n / t_plain)
            ledger.append(n / t_ledger)
            indexed.append(n / t_indexed)
            bare.append(n / t_bare)
    rates = {
        "plain": median(plain),
        "ledger": median(ledger),
        "indexed": median(indexed),
        "bare": median(bare),
    }
    how = "executemany" if store == "sqlite" else "bin COPY"
    print(
        f"{store:<10} ledger append       {rates['ledger']:>10,.0f} events/s\n"
        f"{'':<10} raw {how}, indexed {rates['indexed']:>10,.0f} rows/s   "
        f"append / indexed {rates['ledger'] / rates['indexed']:.2f}\n"
        f"{'':<10} raw {how}, bare    {rates['bare']:>10,.0f} rows/s   "
        f"append / bare {rates['ledger'] / rates['bare']:.2f}\n"
        f"{'':<10} without encryption  {rates['plain']:>10,.0f} events/s   "
        f"encryption's share of append {1 - rates['ledger'] / rates['plain']:.0%}"
    )
    return {"store": store, "events": events, **rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per figure; medians are printed"
    )
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG, help="PostgreSQL server for the scratch schema"
    )
    args = parser.parse_args()
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    print(
        f"{args.events:,} events over {args.customers:,} customers, batches of {BATCH}, "
        f"median of {args.repeat}, load average {os.getloadavg()[0]:.2f}"
    )
    for store in stores:
        run(store, args.events, args.customers, args.pg_url, args.repeat)


if __name__ == "__main__":
    main()
