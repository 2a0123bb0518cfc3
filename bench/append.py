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

It also prints what the import and the raw indexed insert cost in CPU per
event: this process's, and on a PostgreSQL server on this machine the server's
(every `postgres` process, read from /proc). The sum bounds every design: with
C cores, no way of appending that spends this CPU per event can pass
append / indexed = (raw indexed time per row) / (CPU per event / C), however
its work is spread over processes.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from collections.abc import Callable
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
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def server_cpu_clock(url: str) -> Callable[[], float] | None:
    """A clock of the CPU seconds the store's server processes have used, when
    they run on this machine and /proc shows them: every `postgres` process (the
    session's backend, and the WAL writer, checkpointer and others its writes
    keep busy). None for SQLite (its work is this process's) or a remote server."""
    parsed = parse_database_url(url)
    local = parsed.host in _LOOPBACK or parsed.host.startswith("/")  # a socket directory
    if parsed.kind != "postgresql" or not local:
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def clock() -> float:
        ticks = 0
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    line = f.read()
            except OSError:
                continue  # a process that ended between listing and reading
            name, _, rest = line.partition(") ")
            if name.endswith("(postgres"):
                fields = rest.split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / tick

    return clock if glob.glob("/proc/self/stat") else None


class Spent:
    """Wall and CPU seconds of a stretch of work: this process's, and the store
    server's where `server_cpu_clock` can read it."""

    def __init__(self, url: str) -> None:
        self._server = server_cpu_clock(url)
        self.wall = self.cpu = 0.0
        self.server: float | None = None

    def __enter__(self) -> Spent:
        # The server's clock (a walk over /proc) read outside the timed stretch.
        server = self._server_now()
        self._started = (time.perf_counter(), time.process_time(), server)
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, server = self._started
        self.wall = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu
        now = self._server_now()
        self.server = None if now is None or server is None else now - server

    def _server_now(self) -> float | None:
        return self._server() if self._server is not None else None

    def cpu_per(self, n: int) -> float:
        """CPU seconds per item, the server's included where known."""
        return (self.cpu + (self.server or 0.0)) / n


def ledger_append(url: str, path: Path, *, encrypt: bool = True) -> tuple[int, Spent]:
    app = LedgerApplication(parse_database_url(url))
    if not encrypt:
        # The baseline: the mapper stores personal values as given (bench only).
        app.mapper.keyring = None  # type: ignore[attr-defined]
    try:
        with Appender(app, batch_size=BATCH) as appender, path.open() as f:
            with Spent(url) as spent:
                report = appender.append(read_items(f))
    finally:
        app.close()
    assert report.ok, report.rejected[:3]
    return report.appended, spent


def stored_rows(url: str) -> list[tuple[Any, ...]]:
    with Connection(parse_database_url(url)) as conn:
        cols = ", ".join(EVENT_COLUMNS)
        return conn.fetchall(f"SELECT {cols} FROM ledger_events ORDER BY notification_id")


def raw_insert(url: str, table: str, rows: list[tuple[Any, ...]], batch: int) -> Spent:
    """What inserting `rows` into `table` took, `batch` rows a transaction
    (SQLite: executemany; PostgreSQL: binary COPY)."""
    cols = ", ".join(EVENT_COLUMNS)
    with Connection(parse_database_url(url)) as conn, Spent(url) as spent:
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
    return spent


def run(store: str, events: int, customers: int, pg_url: str, repeat: int) -> dict[str, Any]:
    """Every figure `repeat` times, interleaved (the machine's load drifts), and
    the medians; the ratios are of medians measured in the same run."""
    plain: list[float] = []
    ledger: list[float] = []
    indexed: list[float] = []
    bare: list[float] = []
    # CPU per event (this process's and the server's): the import, the raw indexed insert.
    ledger_cpu: list[Spent] = []
    indexed_cpu: list[Spent] = []
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
            plain.append(n / t_plain.wall)
            ledger.append(n / t_ledger.wall)
            indexed.append(n / t_indexed.wall)
            bare.append(n / t_bare.wall)
            ledger_cpu.append(t_ledger)
            indexed_cpu.append(t_indexed)
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
    cpu = _cpu_lines(store, events, ledger_cpu, indexed_cpu, rates["indexed"])
    print(cpu.pop("text"))
    return {"store": store, "events": events, **rates, **cpu}


def _cpu_lines(
    store: str, n: int, ledger: list[Spent], indexed: list[Spent], indexed_rate: float
) -> dict[str, Any]:
    """CPU per event of the import and of the raw indexed insert (medians of the
    runs), and the ratio no design spending the import's CPU can pass on this
    machine's cores: the raw insert's time per row against that CPU spread over
    every core."""
    cores = os.cpu_count() or 1
    us = 1e6 / n
    here, server = median(s.cpu for s in ledger) * us, _median_server(ledger, us)
    raw_here, raw_server = median(s.cpu for s in indexed) * us, _median_server(indexed, us)
    total = median(s.cpu_per(n) for s in ledger) * 1e6
    ceiling = (1e6 / indexed_rate) / (total / cores)
    if store == "sqlite":
        spent = f"append {here:.1f} us, raw indexed {raw_here:.1f} us (in this process)"
    elif server is None:
        spent = (
            f"append {here:.1f} us, raw indexed {raw_here:.1f} us in this process "
            "(the server's not measured: not on this machine)"
        )
    else:
        spent = (
            f"append {here:.1f} + {server:.1f} us, raw indexed {raw_here:.1f} + "
            f"{raw_server or 0:.1f} us (this process + the server)"
        )
    text = (
        f"{'':<10} CPU per event: {spent}\n"
        f"{'':<10} with that CPU on {cores} cores, no design passes append / indexed "
        f"{ceiling:.2f}"
    )
    return {
        "append_cpu_us": here,
        "append_server_cpu_us": server,
        "indexed_cpu_us": raw_here,
        "indexed_server_cpu_us": raw_server,
        "ceiling_on_these_cores": ceiling,
        "text": text,
    }


def _median_server(spent: list[Spent], us: float) -> float | None:
    known = [s.server for s in spent if s.server is not None]
    return median(known) * us if known else None


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
