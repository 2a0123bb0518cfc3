"""The append service on both stores: rules, idempotency, all-or-nothing, what is stored."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.appending.appender import Appender
from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.input import read_items
from ledger.reading import head_position, read_events
from ledger.rights import load_policy
from tests.factories import append_events as append
from tests.factories import event, ndjson


def stored(app: LedgerApplication) -> list[Any]:
    with Connection(app.url) as conn:
        return read_events(conn, 0, 100_000)


def created(cid: str = "c1") -> dict[str, Any]:
    return event("customer.created", cid, {"card": {"name": "Ann"}})


def reasons(report: AppendReport) -> list[str]:
    return [str(r) for r in report.rejected]


def test_stored_envelope_has_spec_fields_and_ledger_additions(app: LedgerApplication) -> None:
    e = created()
    report = append(app, [e])
    assert (report.appended, report.duplicates, report.rejected) == (1, 0, [])
    [s] = stored(app)
    assert str(s.event_id) == e["event_id"]
    assert s.type == "customer.created" and s.customer_id == "c1"
    assert s.data.card == {"name": "Ann"}  # type: ignore[attr-defined]
    assert s.occurred_at.isoformat() == "2026-10-01T10:00:00+02:00"
    assert s.actor.id == "u-1" and s.source == "crm-ui"
    assert s.schema_version == 1
    assert abs(datetime.now(UTC) - s.recorded_at) < timedelta(minutes=5)
    assert s.position == 1 and s.stream_version == 1


def test_event_id_is_generated_when_absent(app: LedgerApplication) -> None:
    e = created()
    del e["event_id"]
    assert append(app, [e]).appended == 1
    # Without an id nothing marks a repeat: each is a new event with an id of its own.
    note = event("note.added", "c1", {"note_id": "n1", "text": "hi"})
    del note["event_id"]
    assert append(app, [note, note]).appended == 2
    assert len({s.event_id for s in stored(app)}) == 3


def test_same_event_id_is_stored_once_and_reported_duplicate(app: LedgerApplication) -> None:
    e = created()
    note = event("note.added", "c1", {"note_id": "n1", "text": "hi"})
    assert append(app, [e, note, note]).duplicates == 1
    again = append(app, [e, note])
    assert (again.appended, again.duplicates, again.rejected) == (0, 2, [])
    assert len(stored(app)) == 2


def test_all_or_nothing_stores_nothing_and_reports_every_rejection(app: LedgerApplication) -> None:
    events = [
        created(),
        event("task.created", "c1", {"task_id": "t1", "title": "Call"}),
        event("task.completed", "c1", {"task_id": "t1"}),
        event("task.completed", "c1", {"task_id": "t1"}),  # line 4: already completed
        event(
            "order.changed",
            "c1",
            {"order_id": "o9", "changes": [{"field": "s", "old": 1, "new": 2}]},
        ),
    ]
    report = append(app, events, batch_size=2)
    assert report.appended == 0 and report.stored is False
    assert [r.line for r in report.rejected] == [4, 5]
    assert reasons(report)[0] == (
        f"line 4 (event_id {events[3]['event_id']}, type task.completed): "
        "data.task_id: task 't1' is completed; task.completed needs it pending"
    )
    assert "data.order_id: order 'o9' does not exist for this customer" in reasons(report)[1]
    assert stored(app) == []
    assert head_position(Connection(app.url)) == 0


def test_skip_invalid_stores_the_valid_ones(app: LedgerApplication) -> None:
    events = [
        created(),
        event("segment.left", "c1", {"segment_id": "vip"}),
        event("segment.joined", "c1", {"segment_id": "vip"}),
    ]
    report = append(app, events, skip_invalid=True)
    assert report.appended == 2 and [r.line for r in report.rejected] == [2]
    assert [s.type for s in stored(app)] == ["customer.created", "segment.joined"]


def test_schema_errors_are_rejections_with_line_numbers(app: LedgerApplication) -> None:
    text = ndjson([created()]) + "{not json\n" + json.dumps({"type": "note.added"}) + "\n"
    appender = Appender(app)
    report = appender.append(read_items(io.StringIO(text)))
    appender.close()
    assert [r.line for r in report.rejected] == [2, 3]
    assert "(json): malformed JSON" in reasons(report)[0]
    assert "line 3 (event_id -, type note.added): customer_id: Field required" in reasons(report)[1]
    assert stored(app) == []


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (
            [event("note.added", "ghost", {"note_id": "n", "text": "x"})],
            "customer_id: customer 'ghost' does not exist",
        ),
        ([created(), created()], "customer_id: customer 'c1' already exists"),
        (
            [
                created(),
                event("order.created", "c1", {"order_id": "o", "status": "new"}),
                event("order.created", "c1", {"order_id": "o", "status": "new"}),
            ],
            "data.order_id: order 'o' already exists",
        ),
        (
            [created(), event("email.opened", "c1", {"message_id": "m"})],
            "data.message_id: email 'm' does not exist for this customer",
        ),
        (
            [created(), event("sms.delivered", "c1", {"message_id": "m"})],
            "data.message_id: sms 'm' was not sent to this customer",
        ),
        (
            [
                created(),
                event(
                    "chat.message",
                    "c1",
                    {"dialog_id": "d", "message_id": "m", "direction": "inbound"},
                ),
            ],
            "data.dialog_id: dialogue 'd' does not exist for this customer",
        ),
        (
            [
                created(),
                event("chat.started", "c1", {"dialog_id": "d", "channel": "website"}),
                event("chat.status_changed", "c1", {"dialog_id": "d", "status": "closed"}),
                event(
                    "chat.message",
                    "c1",
                    {"dialog_id": "d", "message_id": "m", "direction": "inbound"},
                ),
            ],
            "data.dialog_id: dialogue 'd' is closed",
        ),
        (
            [
                created(),
                event("segment.joined", "c1", {"segment_id": "s"}),
                event("segment.joined", "c1", {"segment_id": "s"}),
            ],
            "data.segment_id: already a member of segment 's'",
        ),
        (
            [created(), event("task.reopened", "c1", {"task_id": "t"})],
            "data.task_id: task 't' does not exist for this customer",
        ),
        (
            [
                created(),
                event("task.created", "c1", {"task_id": "t", "title": "x"}),
                event("task.reopened", "c1", {"task_id": "t"}),
            ],
            "data.task_id: task 't' is pending; task.reopened needs it completed",
        ),
        (
            [
                created(),
                event("task.created", "c1", {"task_id": "t", "title": "x"}),
                event("task.deleted", "c1", {"task_id": "t"}),
                event(
                    "task.edited",
                    "c1",
                    {"task_id": "t", "changes": [{"field": "title", "old": "x", "new": "y"}]},
                ),
            ],
            "data.task_id: task 't' is deleted; task.edited needs it pending",
        ),
        (
            [
                created(),
                event(
                    "visit.recorded",
                    "c1",
                    {"visit_id": "v", "source": "google", "channel": "search", "duration_s": 3},
                ),
                event(
                    "visit.recorded",
                    "c1",
                    {"visit_id": "v", "source": "google", "channel": "search", "duration_s": 3},
                ),
            ],
            "data.visit_id: visit 'v' already exists",
        ),
    ],
)
def test_rules_reject_with_field_and_reason(
    app: LedgerApplication, events: list[dict[str, Any]], expected: str
) -> None:
    report = append(app, events)
    assert len(report.rejected) == 1, reasons(report)
    assert reasons(report)[0].endswith(expected), reasons(report)
    assert stored(app) == []


def test_ids_belong_to_the_customer_that_created_them(app: LedgerApplication) -> None:
    assert append(
        app,
        [
            created("c1"),
            created("c2"),
            event("order.created", "c1", {"order_id": "o1", "status": "new"}),
        ],
    ).ok
    report = append(app, [event("order.created", "c2", {"order_id": "o1", "status": "new"})])
    assert reasons(report)[0].endswith(
        "data.order_id: order 'o1' already exists for another customer"
    )
    report = append(
        app,
        [
            event(
                "order.changed",
                "c2",
                {"order_id": "o1", "changes": [{"field": "status", "old": "new", "new": "paid"}]},
            )
        ],
    )
    assert reasons(report)[0].endswith("order 'o1' does not exist for this customer")
    # The same within one input, before anything is stored:
    report = append(
        app,
        [
            event("task.created", "c1", {"task_id": "t", "title": "a"}),
            event("task.created", "c2", {"task_id": "t", "title": "b"}),
        ],
    )
    assert reasons(report)[0].endswith("task 't' already exists for another customer")


def test_rights_policy_is_enforced_for_users_only(app: LedgerApplication, tmp_path: Path) -> None:
    policy_file = tmp_path / "rights.toml"
    policy_file.write_text(
        '[roles]\nmanager = ["tasks.edit", "tasks.reopen", "tasks.delete"]\n'
        '[users]\n"u-boss" = ["manager"]\n"u-7" = ["tasks.edit"]\n'
    )
    policy = load_policy(policy_file)
    assert append(app, [created(), event("task.created", "c1", {"task_id": "t", "title": "x"})]).ok
    change = {"task_id": "t", "changes": [{"field": "title", "old": "x", "new": "y"}]}
    denied = append(
        app,
        [event("task.deleted", "c1", {"task_id": "t"}, actor={"kind": "user", "id": "u-7"})],
        policy=policy,
    )
    assert reasons(denied)[0].endswith("actor.id: user 'u-7' lacks the right tasks.delete")
    ok = append(
        app,
        [
            event("task.edited", "c1", change, actor={"kind": "user", "id": "u-7"}),
            event("task.deleted", "c1", {"task_id": "t"}, actor={"kind": "api", "id": "svc"}),
        ],
        policy=policy,
    )
    assert ok.ok and ok.appended == 2


def test_large_input_is_saved_in_batches_in_order(app: LedgerApplication) -> None:
    events = [created(f"c{i}") for i in range(50)]
    events += [
        event("note.added", f"c{i % 50}", {"note_id": f"n{i}", "text": "t"}) for i in range(2000)
    ]
    report = append(app, events, batch_size=300)
    assert report.appended == 2050 and (report.first_position, report.last_position) == (1, 2050)
    rows = stored(app)
    assert [str(r.event_id) for r in rows] == [e["event_id"] for e in events]
    # each customer's stream is contiguous: 1..41
    versions = [r.stream_version for r in rows if r.customer_id == "c7"]
    assert versions == list(range(1, 42))


@pytest.mark.parametrize("optimistic_attempts", [5, 0])
def test_stale_writer_conflicts_and_retries_without_corrupting_the_stream(
    app: LedgerApplication, optimistic_attempts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With 0 optimistic attempts the batch goes straight to the locked fallback.
    monkeypatch.setattr("ledger.appending.appender.OPTIMISTIC_ATTEMPTS", optimistic_attempts)
    first, second = Appender(app), Appender(app)
    note = lambda n: event("note.added", "c1", {"note_id": n, "text": "x"})  # noqa: E731
    assert first.append(read_items(io.StringIO(ndjson([created()])))).ok  # caches c1 at v1
    assert second.append(read_items(io.StringIO(ndjson([note("a")])))).ok  # stores v2
    # `first` still believes c1 is at v1: its insert of v2 conflicts, is retried from
    # the stored state, and lands as v3.
    report = first.append(read_items(io.StringIO(ndjson([note("b")]))), skip_invalid=True)
    assert report.ok and report.appended == 1
    assert [(s.stream_version, s.type) for s in stored(app)] == [
        (1, "customer.created"),
        (2, "note.added"),
        (3, "note.added"),
    ]
    first.close()
    second.close()


def test_busy_customer_is_snapshotted_and_loads_from_the_snapshot(
    app: LedgerApplication,
) -> None:
    from ledger.application import SNAPSHOT_INTERVAL
    from ledger.domain import customer_stream_id

    notes = [
        event("note.added", "c1", {"note_id": f"n{i}", "text": "x"})
        for i in range(SNAPSHOT_INTERVAL + 10)
    ]
    tasks = [event("task.created", "c1", {"task_id": "t1", "title": "Call"})]
    assert append(app, [created(), *tasks, *notes], batch_size=100).ok
    assert app.snapshots is not None
    # Taken in the import's own transaction, after the batch that crossed the interval.
    [snapshot] = list(app.snapshots.get(customer_stream_id("c1")))
    assert snapshot.originator_version == SNAPSHOT_INTERVAL
    assert snapshot.state["tasks"] == {"t1": "pending"}  # type: ignore[attr-defined]
    customer = app.customer("c1")
    assert customer.version == SNAPSHOT_INTERVAL + 12 and customer.tasks == {"t1": "pending"}
    # Rules still hold against a customer loaded from its snapshot.
    report = append(app, [event("task.reopened", "c1", {"task_id": "t1"})])
    assert reasons(report)[0].endswith("task 't1' is pending; task.reopened needs it completed")
