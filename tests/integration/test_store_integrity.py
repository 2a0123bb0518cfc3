"""Stored events are immutable in the database, and concurrent writers neither
corrupt a stream nor let a tailing reader miss an event."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import psycopg
import pytest

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.reading import read_rows
from tests.factories import append_to_url, event


def _writer(url: str, customer: str, count: int, skip_invalid: bool, create: bool) -> None:
    events = [event("customer.created", customer, {"card": {}})] if create else []
    events += [
        event("note.added", customer, {"note_id": f"{customer}-{i}", "text": "x"})
        for i in range(count)
    ]
    # Small batches so writers interleave many times.
    for start in range(0, len(events), 25):
        append_to_url(url, events[start : start + 25], skip_invalid=skip_invalid, batch_size=25)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_events SET topic = 'x'",
        "DELETE FROM ledger_events",
        "DELETE FROM ledger_events WHERE notification_id = 1",
    ],
)
def test_update_and_delete_are_refused_by_the_database(store_url: str, statement: str) -> None:
    append_to_url(store_url, [event("customer.created", "c1", {"card": {}})])
    with Connection(parse_database_url(store_url)) as conn:
        with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="immutable"):
            conn.execute(statement)
        assert conn.fetchone("SELECT COUNT(*), MIN(topic) FROM ledger_events") == (
            1,
            "customer.created",
        )


def test_truncate_is_refused_on_postgres(pg_url: str) -> None:
    append_to_url(pg_url, [event("customer.created", "c1", {"card": {}})])
    with Connection(parse_database_url(pg_url)) as conn:
        with pytest.raises(psycopg.Error, match="immutable: TRUNCATE refused"):
            conn.execute("TRUNCATE ledger_events")
        assert conn.fetchone("SELECT COUNT(*) FROM ledger_events") == (1,)


@pytest.mark.parametrize("skip_invalid", [True, False])
def test_concurrent_writers_to_one_customer_get_a_retried_conflict(
    store_url: str, skip_invalid: bool
) -> None:
    append_to_url(store_url, [event("customer.created", "busy", {"card": {}})])
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(store_url, "busy", 100, skip_invalid, False))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Connection(parse_database_url(store_url)) as conn:
        versions = [
            r[0]
            for r in conn.fetchall(
                "SELECT originator_version FROM ledger_events ORDER BY originator_version"
            )
        ]
    # 1 creation + 4 x 100 notes, one stream, no gaps, no duplicates.
    assert versions == list(range(1, 402))


def test_tailing_reader_misses_nothing_while_writers_run(store_url: str) -> None:
    LedgerApplication(parse_database_url(store_url)).close()  # creates the table
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(store_url, f"w{i}", 300, True, True)) for i in range(4)
    ]
    for p in procs:
        p.start()
    url = parse_database_url(store_url)
    seen: list[int] = []
    deadline = time.monotonic() + 120
    with Connection(url) as conn:
        while time.monotonic() < deadline:
            writers_done = all(not p.is_alive() for p in procs)
            # Tail exactly as a projector does: strictly after the last position seen.
            while rows := read_rows(conn, seen[-1] if seen else 0, 50):
                seen.extend(r.position for r in rows)
            if writers_done:
                break
            time.sleep(0.005)
        total = conn.fetchone("SELECT COUNT(*) FROM ledger_events")
    assert all(p.exitcode == 0 for p in procs)
    assert total == (4 * 301,)
    assert len(seen) == 4 * 301 and seen == sorted(set(seen))


def test_starting_a_command_during_a_long_import_does_not_queue_for_locks(pg_url: str) -> None:
    url = parse_database_url(pg_url)
    importer = LedgerApplication(url)
    holding, release = threading.Event(), threading.Event()

    def long_import() -> None:
        with importer.ledger_recorder.write_session():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=long_import)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        # Every command constructs the application, which ensures the schema: with
        # the schema in place that must take no table lock the import conflicts with.
        LedgerApplication(url).close()
        assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join()
        importer.close()
