"""A batch's rows go into PostgreSQL as one INSERT statement, sent with the COMMIT:
one statement per row cost the group writer about 50 us of Python each. Counted
from libpq's trace of the protocol, the real server answering."""

from __future__ import annotations

import io
import json

import pytest

from ledger.appending.appender import Appender
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.input import read_items
from ledger.reading import iter_rows
from services.appending import append_with
from tests.factories import append_to_url, event, ndjson
from tests.round_trips import traced


def _binds_per_wait(path: str, start: int) -> list[list[str]]:
    """From line `start` of a libpq trace: the statements bound (Bind messages,
    by the statement Parse named last) before each Sync."""
    with open(path) as f:
        lines = f.read().splitlines()[start:]
    trips: list[list[str]] = []
    current: list[str] = []
    parsed = ""
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3 or parts[0] != "F":
            continue
        if parts[2] == "Parse":
            parsed = parts[3].split('"')[3][:12]
        elif parts[2] == "Bind":
            current.append(parsed)
        elif parts[2] == "Sync":
            trips.append(current)
            current = []
    return trips


@pytest.mark.parametrize("count", [1, 12, 100])
def test_a_group_is_one_insert_with_the_commit(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    append_to_url(pg_url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    notes = [event("note.added", "c1", {"note_id": f"n{i}", "text": "x"}) for i in range(count)]
    with traced(monkeypatch) as trace:
        app = LedgerApplication(parse_database_url(pg_url))
        try:
            with Appender(app) as appender:
                with open(trace.path) as f:
                    start = len(f.read().splitlines())
                items = read_items(io.StringIO(ndjson(notes)))
                report = append_with(appender, items, skip_invalid=True)
        finally:
            app.close()
        trips = _binds_per_wait(trace.path, start)
    monkeypatch.undo()  # connections opened from here on are not traced
    assert report.appended == count
    inserts = [t for t in trips if any(s.startswith("INSERT INTO") for s in t)]
    assert inserts == [["INSERT INTO ", "COMMIT"]], trips
    # Every row stored as given, in order, numbered one after the other.
    with Connection(parse_database_url(pg_url)) as conn:
        rows = list(iter_rows(conn))
    assert [r.position for r in rows] == list(range(1, count + 2))
    assert [json.loads(r.state)["event_id"] for r in rows[1:]] == [n["event_id"] for n in notes]
