"""`ledger append` keeps only recently used customers in memory: an evicted customer
is reloaded through the import's own transaction and decided exactly as if kept."""

from __future__ import annotations

import io
from typing import Any

import pytest

from ledger.appending.appender import Appender
from ledger.appending.deciding import DEFAULT_CUSTOMER_CACHE, REPLAY_LIMIT
from ledger.appending.report import AppendReport
from ledger.application import SNAPSHOT_INTERVAL, LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.input import read_items
from ledger.reading import head_position, read_events
from tests.factories import append_ok, event, ndjson
from tests.store_support import refuse_on_insert


def created(cid: str) -> dict[str, Any]:
    return event("customer.created", cid, {"card": {"name": cid}})


def note(cid: str, n: str) -> dict[str, Any]:
    return event("note.added", cid, {"note_id": n, "text": "x"})


def order_changed(cid: str, order_id: str) -> dict[str, Any]:
    changes = [{"field": "status", "old": "new", "new": "paid"}]
    return event("order.changed", cid, {"order_id": order_id, "changes": changes})


def run(
    app: LedgerApplication, events: list[dict[str, Any]], cache: int, *, skip: bool = False
) -> AppendReport:
    with Appender(app, batch_size=2, customer_cache=cache) as appender:
        return appender.append(read_items(io.StringIO(ndjson(events))), skip_invalid=skip)


def outcome(report: AppendReport) -> tuple[Any, ...]:
    return (
        report.stored,
        report.appended,
        report.duplicates,
        [str(r) for r in report.rejected],
        (report.first_position, report.last_position),
    )


def mixed_input() -> tuple[list[dict[str, Any]], list[int]]:
    """Events that depend on state made earlier in the same input, spread so that
    with one cached customer and batches of two every one of them meets an
    evicted customer; and the lines that must be rejected."""
    task = event("task.created", "c2", {"task_id": "t1", "title": "Call"})
    order = event("order.created", "c1", {"order_id": "o1", "status": "new"})
    good = [
        created("c1"),  # 1
        created("c2"),
        order,
        task,
        created("c3"),  # 5
        created("c4"),
        event("task.completed", "c2", {"task_id": "t1"}),
        order_changed("c1", "o1"),
        *[note("c0", f"late-{i}") for i in range(SNAPSHOT_INTERVAL // 50)],  # 9-18
        note("c3", "n3"),
    ]
    bad = [
        event("task.completed", "c2", {"task_id": "t1"}),  # 20: already completed
        note("c4", "n4"),
        event("order.created", "c3", {"order_id": "o1", "status": "new"}),  # 22: c1's
        note("c4", "n5"),
        dict(order),  # 24: a repeat, a duplicate
        {**task, "data": {"task_id": "t1", "title": "Other"}},  # 25: a conflict
        created("c1"),  # 26: exists
        order_changed("c1", "o1"),
        event("task.reopened", "c2", {"task_id": "t1"}),
        order_changed("c1", "o2"),  # 29: no such order
    ]
    return good + bad, [20, 22, 25, 26, 29]


def stored_rows(app: LedgerApplication) -> list[tuple[Any, ...]]:
    with Connection(app.url) as conn:
        return [
            (e.position, str(e.event_id), e.customer_id, e.stream_version, e.type)
            for e in read_events(conn, 0, 100_000)
        ]


@pytest.mark.parametrize("replay_limit", [REPLAY_LIMIT, 1])
def test_evicted_customers_are_decided_as_if_kept(
    app: LedgerApplication, replay_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a limit of 1 every evicted customer is snapshotted in the import's
    # transaction, and reloaded from that snapshot.
    monkeypatch.setattr("ledger.appending.deciding.REPLAY_LIMIT", replay_limit)
    # c0 is busy and snapshotted before the import: reloading it reads the snapshot.
    busy = SNAPSHOT_INTERVAL * 2 - 10
    append_ok(app, [created("c0"), *[note("c0", f"n{i}") for i in range(busy - 1)]])
    before = stored_rows(app)
    events, rejected_lines = mixed_input()

    kept = run(app, events, DEFAULT_CUSTOMER_CACHE)
    evicted = run(app, events, 1)

    assert [r.line for r in kept.rejected] == rejected_lines
    assert kept.duplicates == 1 and not kept.stored
    assert outcome(evicted) == outcome(kept)
    assert stored_rows(app) == before  # all or nothing: nothing of either run
    assert app.snapshots is not None  # nor the snapshots taken in its transaction
    assert list(app.snapshots.get(customer_stream_id("c1"))) == []
    with Connection(app.url) as conn:
        assert head_position(conn) == len(before)

    # Without the rejected lines the same input is stored, in order, with each
    # customer's stream contiguous, and the busy customer (evicted by the end) is
    # snapshotted once the transaction commits.
    good = [e for line, e in enumerate(events, 1) if line not in rejected_lines]
    report = run(app, good, 1)
    assert report.ok and report.stored and report.duplicates == 1
    rows = stored_rows(app)[len(before) :]
    assert [r[1] for r in rows] == [e["event_id"] for e in good if e is not events[23]]
    assert [r[0] for r in rows] == list(range(len(before) + 1, len(before) + 1 + len(rows)))
    for cid in ("c1", "c2", "c3", "c4"):
        assert [r[3] for r in rows if r[2] == cid] == list(
            range(1, 1 + sum(r[2] == cid for r in rows))
        )
    versions = [s.originator_version for s in app.snapshots.get(customer_stream_id("c0"))]
    assert max(versions) == busy + SNAPSHOT_INTERVAL // 50
    c1, c2 = app.customer("c1"), app.customer("c2")
    assert c1.orders == {"o1"} and c2.tasks == {"t1": "pending"}


@pytest.mark.parametrize("replay_limit", [REPLAY_LIMIT, 1])
def test_skip_invalid_with_eviction_rejects_the_same_lines(
    app: LedgerApplication, replay_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.appending.deciding.REPLAY_LIMIT", replay_limit)
    append_ok(app, [created("c0")])
    events, rejected_lines = mixed_input()
    report = run(app, events, 1, skip=True)
    assert [r.line for r in report.rejected] == rejected_lines
    assert report.duplicates == 1
    assert report.appended == len(events) - len(rejected_lines) - 1
    assert app.snapshots is not None
    c2 = list(app.snapshots.get(customer_stream_id("c2")))
    assert bool(c2) == (replay_limit == 1)  # taken when evicted, committed already


def test_customers_of_a_refused_batch_stay_in_memory(pg_url: str) -> None:
    """Rows after a refused one are not in the store, yet the rest of the input is
    still decided with them (to report every rejection): their customers are kept."""
    order = event("order.created", "c1", {"order_id": "o1", "status": "new"})
    events = [
        created("c1"),
        created("c2"),
        note("c1", "refused"),  # 3: the store refuses it; batch (3, 4) is not stored
        order,
        created("c3"),
        created("c4"),
        order_changed("c1", "o1"),  # 7: o1 exists only in memory
        event("order.created", "c2", {"order_id": "o1", "status": "new"}),  # 8: c1's
        dict(order),  # 9: a duplicate of line 4
    ]
    app = LedgerApplication(parse_database_url(pg_url))
    try:
        refuse_on_insert(pg_url, events[2]["event_id"], "check_violation")
        kept, evicted = run(app, events, DEFAULT_CUSTOMER_CACHE), run(app, events, 0)
        assert [r.line for r in kept.rejected] == [3, 8] and kept.duplicates == 1
        assert outcome(evicted) == outcome(kept)
        assert stored_rows(app) == []
    finally:
        app.close()
