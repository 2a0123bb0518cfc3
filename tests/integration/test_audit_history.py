"""`ledger audit history`: what an auditor sees for one subject, on both stores."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.audit.history import HistoryFilter, Selector, history_statement, iter_history
from ledger.db import Connection
from tests.audit_support import customer_story, notes, owner, run
from tests.factories import append_ok as append


@pytest.fixture
def story(app: LedgerApplication, store_url: str) -> str:
    append(app, customer_story())
    return store_url


def _json(url: str, *args: str) -> dict[str, Any]:
    result = run(url, "audit", "history", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_order_history_is_every_event_of_the_order_in_position_order(story: str) -> None:
    out = _json(story, "--order", "o-1")
    events = out["events"]
    assert [e["type"] for e in events] == ["order.created", "order.changed", "order.changed"]
    assert [e["position"] for e in events] == [3, 5, 13]
    assert out["count"] == 3
    assert {e["customer_id"] for e in events} == {"c-1"}
    assert {e["subject"] for e in events} == {"order:o-1"}
    changed = events[1]
    assert changed["actor"] == {"kind": "user", "id": "u-2", "name": "Ivan"}
    assert changed["source"] == "api"
    assert changed["occurred_at"] == "2026-10-02T10:00:00Z"
    assert changed["recorded_at"].endswith("Z")
    assert changed["changes"] == [
        {"field": "status", "old": "new", "new": "paid"},
        {"field": "total", "old": "10.00", "new": "12.50"},
    ]
    # The producer's offset is kept as written: auditors see what was stored.
    assert events[0]["occurred_at"] == "2026-10-01T09:00:00+02:00"
    assert events[0]["changes"] == []
    assert events[0]["data"] == {
        "order_id": "o-1",
        "number": None,
        "status": "new",
        "total": "10.00",
        "currency": None,
    }
    assert len(changed["event_id"]) == 36 and len(changed["chain_hash"]) == 64


def test_the_table_shows_who_changed_what_and_when(story: str) -> None:
    result = run(story, "audit", "history", "--order", "o-1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["POSITION", "OCCURRED_AT", "RECORDED_AT", "TYPE", "EVENT_ID"]
    changed = next(i for i, line in enumerate(lines) if "order.changed" in line)
    assert lines[changed].split()[0] == "5"
    assert "2026-10-02T10:00:00Z" in lines[changed]
    assert "user u-2 (Ivan) / api" in lines[changed]
    assert lines[changed + 1].strip() == 'status: "new" -> "paid"'
    assert lines[changed + 2].strip() == 'total: "10.00" -> "12.50"'
    assert lines[-1] == "3 events for order o-1"


def test_each_subject_kind_has_its_own_history(story: str) -> None:
    def types(*selector: str) -> list[str]:
        return [e["type"] for e in _json(story, *selector)["events"]]

    assert types("--task", "t-1") == ["task.created", "task.edited"]
    assert types("--dialog", "d-1") == ["chat.started", "chat.status_changed"]
    assert types("--email", "m-1") == ["email.sent", "email.opened"]
    assert types("--order", "o-2") == ["order.created", "order.changed"]


def test_customer_history_is_every_event_of_that_customer_only(story: str) -> None:
    events = _json(story, "--customer", "c-1")["events"]
    assert [e["position"] for e in events] == [1, 3, 5, 7, 8, 9, 10, 11, 12, 13]
    assert {e["customer_id"] for e in events} == {"c-1"}
    assert [e["stream_version"] for e in events] == list(range(1, 11))


def test_ndjson_is_one_event_a_line(story: str) -> None:
    result = run(story, "audit", "history", "--task", "t-1", "--format", "ndjson")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["task.created", "task.edited"]
    assert lines[1]["changes"] == [{"field": "title", "old": "Call back", "new": "Call back today"}]


def test_csv_has_one_row_per_field_change(story: str) -> None:
    result = run(story, "audit", "history", "--order", "o-1", "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["position"], r["field"], r["old"], r["new"]) for r in rows] == [
        ("3", "", "", ""),
        ("5", "status", '"new"', '"paid"'),
        ("5", "total", '"10.00"', '"12.50"'),
        ("13", "status", '"paid"', '"shipped"'),
    ]
    assert rows[1]["actor_kind"] == "user" and rows[1]["actor_name"] == "Ivan"
    assert rows[1]["occurred_at"] == "2026-10-02T10:00:00Z" and rows[1]["recorded_at"]
    assert json.loads(rows[0]["data"])["status"] == "new"
    assert json.loads(rows[1]["data"]) == {"order_id": "o-1"}


def test_filters_by_actor_type_and_occurred_time(story: str) -> None:
    def positions(*args: str) -> list[int]:
        return [e["position"] for e in _json(story, "--customer", "c-1", *args)["events"]]

    assert positions("--actor", "u-2") == [5, 8, 10]
    assert positions("--type", "order.changed", "--type", "task.edited") == [5, 8, 13]
    # since is inclusive, until exclusive, and times compare as instants: position
    # 3 occurred at 09:00+02:00, i.e. 07:00Z, before 07:30Z; position 7 at exactly 09:00Z.
    window = ("--since", "2026-10-01T07:30:00Z", "--until", "2026-10-03T09:00:00Z")
    assert positions(*window) == [1, 5]
    assert positions("--since", "2026-10-01T07:00:00Z", "--until", "2026-10-01T08:00:00Z") == [3]
    assert positions("--since", "2026-10-05") == [11, 12, 13]
    assert positions("--actor", "u-2", "--type", "task.edited") == [8]


def test_recorded_time_filter_uses_when_the_ledger_stored_it(
    app: LedgerApplication, store_url: str
) -> None:
    append(app, customer_story())
    events = _json(store_url, "--order", "o-1")["events"]
    recorded = events[0]["recorded_at"]
    # Everything was recorded now, long after it occurred in October 2026's first week.
    assert (
        _json(store_url, "--order", "o-1", "--since", recorded, "--time", "recorded")["count"] == 3
    )
    assert (
        _json(store_url, "--order", "o-1", "--until", recorded, "--time", "recorded")["count"] == 0
    )
    out = _json(store_url, "--order", "o-1", "--since", "2026-10-02", "--time", "occurred")
    assert out["count"] == 2
    assert out["filters"]["time"] == "occurred_at"


def test_unknown_subject_is_an_empty_history_not_an_error(story: str) -> None:
    table = run(story, "audit", "history", "--order", "nope")
    assert table.exit_code == 0 and table.stdout == "no events for order nope\n"
    out = _json(story, "--customer", "nobody")
    assert out["events"] == [] and out["count"] == 0
    ndjson = run(story, "audit", "history", "--task", "nope", "--format", "ndjson")
    assert ndjson.exit_code == 0 and ndjson.stdout == ""
    rows = run(story, "audit", "history", "--email", "nope", "--format", "csv")
    assert rows.exit_code == 0 and rows.stdout.splitlines()[0].startswith("position,event_id")
    assert len(rows.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--order", "o-1", "--task", "t-1"], "give exactly one of --customer"),
        ([], "none was given"),
        (["--order", "o-1", "--since", "yesterday"], "bad --since 'yesterday'"),
        (["--order", "o-1", "--until", "2026-10-01T10:00:00"], "give a time zone"),
        (["--order", "o-1", "--type", "order.chnged"], "unknown event type 'order.chnged'"),
        (
            ["--order", "o-1", "--since", "2026-10-02", "--until", "2026-10-01"],
            "--since must be before --until",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(story: str, args: list[str], message: str) -> None:
    result = run(story, "audit", "history", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_a_missing_sqlite_file_is_an_error_not_a_new_empty_ledger(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    result = run(f"sqlite:///{path}", "audit", "history", "--order", "o-1")
    assert result.exit_code == 2
    assert "no ledger database at" in result.stderr
    assert not path.exists()


def test_long_histories_are_read_in_pages_in_position_order(
    app: LedgerApplication, db_url: Any
) -> None:
    append(app, notes("c-a", 5) + notes("c-b", 3))
    append(app, notes("c-a", 4, start=5))
    with Connection(db_url) as conn:
        events = list(iter_history(conn, Selector("customer", "c-a"), page_size=2))
        filtered = list(
            iter_history(conn, Selector("customer", "c-a"), HistoryFilter(types=("note.added",)), 2)
        )
    assert [e.position for e in events] == [1, 2, 3, 4, 5, 6, 11, 12, 13, 14]
    assert [e.stream_version for e in events] == list(range(1, 11))
    assert [e.position for e in filtered] == [2, 3, 4, 5, 6, 11, 12, 13, 14]


def _plan(conn: Connection, selector: Selector, filters: HistoryFilter) -> str:
    statement, params = history_statement(conn, selector, filters)
    if conn.kind == "sqlite":
        rows = conn.fetchall("EXPLAIN QUERY PLAN " + statement, [*params, 1000])
        return "\n".join(str(r[-1]) for r in rows)
    # On a small table a sequential scan is cheapest; forbid it to learn whether
    # the query *can* use an index, which is what a million-row table needs.
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_bitmapscan = off")
    rows = conn.fetchall("EXPLAIN " + statement, [*params, 1000])
    return "\n".join(str(r[0]) for r in rows)


@pytest.mark.parametrize("types", [(), ("order.changed", "order.created")])
def test_history_queries_use_an_index_not_a_table_scan(
    app: LedgerApplication, db_url: Any, types: tuple[str, ...]
) -> None:
    append(app, customer_story())
    with Connection(db_url) as conn:
        subject_plan = _plan(conn, Selector("order", "o-1"), HistoryFilter(types=types))
        customer_plan = _plan(conn, Selector("customer", "c-1"), HistoryFilter(types=types))
    if db_url.kind == "sqlite":
        assert "USING INDEX ledger_events_subject" in subject_plan, subject_plan
        assert "USING INDEX sqlite_autoindex_ledger_events_1" in customer_plan, customer_plan
        assert "TEMP B-TREE" not in subject_plan + customer_plan  # no sort: index order
    else:
        assert "Index Scan using ledger_events_subject_idx" in subject_plan, subject_plan
        assert "Index Scan using ledger_events_pkey" in customer_plan, customer_plan
        assert "Sort" not in subject_plan + customer_plan
        assert "Seq Scan" not in subject_plan + customer_plan


def test_history_is_read_from_the_events_table_as_stored(story: str) -> None:
    """No read model in between: what the table holds is what the auditor sees,
    tampered or not (`ledger audit verify` says which)."""
    with owner(story) as o:
        o.set_state(13, bytes(o.row(13)[4]).replace(b'"shipped"', b'"shopped"'))
    events = _json(story, "--order", "o-1")["events"]
    assert events[-1]["changes"] == [{"field": "status", "old": "paid", "new": "shopped"}]
