"""Round trips to PostgreSQL per appended batch: a group of one-event POSTs is one
batch, and at a few milliseconds a round trip under load they set its rate.
Counted from libpq's trace, so a new query on the path fails here, not silently
in a benchmark."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ledger.appending.appender import Appender
from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.audit.verify import verify_chain
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.input import read_items
from ledger.keystore.keyring import Keyring
from ledger.stores.layout import EVENTS_TABLE
from services.appending import append_with
from tests.factories import append_ok, append_to_url, event, ndjson
from tests.round_trips import traced


def _append(appender: Appender, events: list[dict[str, Any]]) -> AppendReport:
    # As the group writer stores a group: skip-invalid, through a kept Appender.
    return append_with(appender, read_items(io.StringIO(ndjson(events))), skip_invalid=True)


def _notes(customers: list[str], first: int, count: int) -> list[dict[str, Any]]:
    return [
        event("note.added", customers[i % len(customers)], {"note_id": f"n{i}", "text": "x"})
        for i in range(first, first + count)
    ]


KNOWN = ["c0", "c1", "c2", "c3"]
WARM = _notes(KNOWN, 0, 8)


def _batch_trips(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, *batches: list[dict[str, Any]]
) -> tuple[AppendReport, list[str]]:
    """The report and round trips of appending the last of `batches`, each one
    batch, through an Appender that stored a batch (`WARM`) of the same
    customers and the batches before it, as the group writer keeps its
    Appender across groups."""
    return _batches_trips(pg_url, monkeypatch, *batches)[-1]


def _batches_trips(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, *batches: list[dict[str, Any]]
) -> list[tuple[AppendReport, list[str]]]:
    """`_batch_trips` of each of `batches`."""
    return _steps_trips(pg_url, monkeypatch, *batches)


Step = list[dict[str, Any]] | Callable[[LedgerApplication], Any]


def _steps_trips(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, *steps: Step
) -> list[tuple[Any, list[str]]]:
    """Each step's result and round trips after the warm-up: a batch appended
    (its report), or a function of the application run (what it returns; a
    connection opened once the trace is closed would hang, so checks run here)."""
    append_to_url(pg_url, [event("customer.created", c, {"card": {"name": c}}) for c in KNOWN])
    # Keys cached stay cached: a loaded machine can take more than the cache's
    # two seconds between two steps, and a key asked for again is a lookup the
    # counts here do not mean.
    monkeypatch.setattr(Keyring, "_expire", lambda self, after_s=0.0: None)
    with traced(monkeypatch) as trace:
        app = LedgerApplication(parse_database_url(pg_url))
        try:
            with Appender(app) as appender:
                assert _append(appender, WARM).appended == len(WARM)
                trace.take()
                return [
                    (_append(appender, s) if isinstance(s, list) else s(app), trace.take())
                    for s in steps
                ]
        finally:
            app.close()


def test_new_events_of_known_customers_take_one_round_trip(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, trips = _batch_trips(pg_url, monkeypatch, _notes(KNOWN, 100, 32))
    assert report.appended == 32 and report.ok
    # No lookup (states and keys at hand; new ids and claims are left to the
    # unique indexes), and no question for the head this Appender's recorder
    # wrote last: the transaction's opening (lock, notify), the insert and the
    # commit, pipelined.
    assert len(trips) == 1, "\n".join(trips)
    assert "LOCK TABLE" in trips[0] and "INSERT INTO" in trips[0] and "COMMIT" in trips[0]


def test_new_customers_and_claims_add_only_the_lookup(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [
        event("customer.created", "new-1", {"card": {"name": "New"}}),
        event("order.created", "new-1", {"order_id": "o-1", "status": "new"}),
        event("order.created", "c1", {"order_id": "o-2", "status": "new"}),
        *_notes(["c0", "new-1"], 200, 6),
    ]
    report, trips = _batch_trips(pg_url, monkeypatch, events)
    assert report.appended == len(events) and report.ok
    # The lookup (new-1's version and key, o-1's and o-2's owners), then the
    # opening, the new key's row, the insert and the commit, pipelined: the key
    # costs no round trip of its own.
    assert len(trips) == 2, "\n".join(trips)
    assert "event_id = ANY" in trips[0]
    assert all(s in trips[1] for s in ("LOCK TABLE", "INSERT INTO ledger_keys", "COMMIT"))


def test_a_stored_duplicate_fails_the_first_insert_then_the_store_is_asked_first(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, failed), (second, asked) = _batches_trips(
        pg_url,
        monkeypatch,
        # Three stored again (a producer's retry), one new: the unique index
        # refuses the insert, and the batch is decided again asking the store.
        [*WARM[:3], *_notes(["c0"], 300, 1)],
        # From then on the store is asked first: no insert fails.
        [*WARM[3:5], *_notes(["c1"], 400, 2)],
    )
    assert (first.appended, first.duplicates, first.ok) == (1, 3, True)
    assert sum("ROLLBACK" in t for t in failed) == 1, "\n".join(failed)
    assert (second.appended, second.duplicates, second.ok) == (2, 2, True)
    # The lookup (stored ids, claims), the opening, the insert with the commit.
    assert len(asked) == 3 and "event_id = ANY" in asked[0], "\n".join(asked)


def test_a_head_moved_by_another_writer_fails_the_one_round_trip_and_nothing_is_lost(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session on the head this process wrote last is refused (its head check
    under the lock) when another process wrote since: the batch is decided
    again and stored after the other's events, the chain intact, and sessions
    ask for the head for a while."""

    def checked(app: LedgerApplication) -> tuple[list[tuple[Any, ...]], Any]:
        with Connection(app.url) as conn:
            stored = conn.fetchall(f"SELECT notification_id FROM {EVENTS_TABLE}")
            return stored, verify_chain(conn)

    _, (report, trips), (again, after), ((stored, verified), _) = _steps_trips(
        pg_url,
        monkeypatch,
        # Another process (its own recorder) appends meanwhile.
        lambda _: append_to_url(pg_url, _notes(["c2"], 500, 3)),
        _notes(KNOWN, 600, 4),
        # After a failed insert the next batch asks first: the lookup, the
        # opening with the head, the insert with the commit.
        _notes(KNOWN, 700, 2),
        checked,
    )
    assert again.appended == 2
    assert (report.appended, report.ok) == (4, True)
    assert any("ROLLBACK" in t for t in trips), "\n".join(trips)
    assert len(after) == 3 and "ROLLBACK" not in "".join(after), "\n".join(after)
    assert "LOCK TABLE" in after[1] and "INSERT" not in after[1], "\n".join(after)
    positions = sorted(r[0] for r in stored)
    assert positions == list(range(1, len(KNOWN) + len(WARM) + 3 + 4 + 2 + 1))
    assert verified.broken is None and verified.last_position == positions[-1]


def test_a_head_moved_past_a_gap_is_refused_too(pg_url: str) -> None:
    """Positions are never skipped by the ledger, but a session on a known head
    does not rely on it: another writer's rows after a gap leave the next
    position free, and the head check still refuses the assumed head."""
    append_to_url(pg_url, [event("customer.created", c, {"card": {"name": c}}) for c in KNOWN])
    app = LedgerApplication(parse_database_url(pg_url))
    other = LedgerApplication(parse_database_url(pg_url))
    recorder: Any = other.ledger_recorder
    original = recorder.write_session

    @contextmanager
    def gapped(**options: Any) -> Iterator[Any]:
        with original() as session:
            session._last_position += 5  # the other writer leaves a gap
            yield session

    recorder.write_session = gapped
    try:
        with Appender(app) as appender:
            assert _append(appender, WARM).appended == len(WARM)
            # A customer of its own: only the positions can collide.
            append_ok(other, [event("customer.created", "c9", {"card": {"name": "c9"}})])
            report = _append(appender, _notes(KNOWN, 900, 3))
        with Connection(app.url) as conn:
            rows = conn.fetchall(f"SELECT notification_id FROM {EVENTS_TABLE}")
            verified = verify_chain(conn)
    finally:
        app.close()
        other.close()
    assert (report.appended, report.ok) == (3, True)
    head = len(KNOWN) + len(WARM)
    assert sorted(r[0] for r in rows)[head:] == [head + 6, head + 7, head + 8, head + 9]
    assert verified.broken is None
