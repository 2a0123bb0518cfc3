"""The runner on both stores: holes in positions, competing runners, writers
racing a live follower, and what `projections status` reports."""

from __future__ import annotations

import json
import threading
import uuid

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.reading import head_position
from ledger.stores.layout import EVENT_COLUMNS, EVENTS_TABLE
from projections import rebuild as replay
from projections import tracking
from projections.registry import PROJECTIONS
from projections.runner import Runner
from projections.schema import ensure_schema
from projections.targets import Target
from tests.cli_runner import ledger_cli, run_ledger
from tests.factories import append_ok as append
from tests.factories import append_to_url as append_url
from tests.factories import event
from tests.projection_support import (
    FollowerProcess,
    concurrent_writer,
    dump,
    history,
    positions,
    wait_until_caught_up,
)


def _raw_insert_at(url: str, position: int, customer_id: str) -> None:
    """Store a customer's creation at an explicit position, leaving a hole below it."""
    state = json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": "customer.created",
            "customer_id": customer_id,
            "occurred_at": "2026-10-01T10:00:00Z",
            "actor": {"kind": "system", "id": "import", "name": None},
            "source": None,
            "data": {"card": {"name": customer_id}},
            "recorded_at": "2026-10-01T10:00:01Z",
            "schema_version": 1,
        }
    ).encode()
    with Connection(parse_database_url(url)) as conn:
        stream = customer_stream_id(customer_id)
        values = (
            position,
            stream.hex if conn.kind == "sqlite" else stream,
            1,
            "customer.created",
            state,
            json.loads(state)["event_id"],
            customer_id,
            None,
            False,
            "0" * 64,
        )
        marks = ", ".join("?" * len(EVENT_COLUMNS))
        conn.execute(
            f"INSERT INTO {EVENTS_TABLE} ({', '.join(EVENT_COLUMNS)}) VALUES ({marks})", values
        )


def test_holes_in_positions_are_passed_without_losing_anything(
    app: LedgerApplication, store_url: str
) -> None:
    append(app, history(customers=2, per_customer=10, seed=5))
    with Connection(app.url) as conn:
        ensure_schema(conn)
        runner = Runner(conn, [Target.live(p) for p in PROJECTIONS], batch_size=4)
        runner.catch_up()
        head = head_position(conn)
        _raw_insert_at(store_url, head + 5, "h1")
        _raw_insert_at(store_url, head + 9, "h2")
        append(app, [event("note.added", "h2", {"note_id": "after-hole", "text": "x"})])
        assert runner.catch_up() == 3
        timeline = [r[0] for r in conn.fetchall("SELECT position FROM rm_timeline ORDER BY 1")]
        stored = [
            r[0] for r in conn.fetchall(f"SELECT notification_id FROM {EVENTS_TABLE} ORDER BY 1")
        ]
    assert timeline == stored and stored[-3:] == [head + 5, head + 9, head + 10]
    assert set(positions(store_url).values()) == {head + 10}


def test_competing_runners_apply_each_event_once(app: LedgerApplication, store_url: str) -> None:
    append(app, history(customers=5, per_customer=80, seed=8))
    with Connection(app.url) as conn:
        ensure_schema(conn)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with Connection(parse_database_url(store_url)) as conn:
                Runner(conn, [Target.live(p) for p in PROJECTIONS], batch_size=5).catch_up()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    together = dump(store_url)
    assert len(together["rm_timeline"]) == 400
    with Connection(app.url) as conn:
        replay.rebuild(conn, list(PROJECTIONS))
    assert dump(store_url) == together


def test_follower_keeps_up_with_concurrent_writers(store_url: str) -> None:
    append_url(store_url, history(customers=2, per_customer=20, seed=1, prefix="early"))
    follower = FollowerProcess(store_url, "--interval", "0.1", "--batch-size", "25")
    try:
        follower.wait_for("caught_up")
        errors: list[BaseException] = []
        writers = [
            threading.Thread(target=concurrent_writer, args=(store_url, f"w{i}-", 10 + i, errors))
            for i in range(3)
        ]
        for w in writers:
            w.start()
        for w in writers:
            w.join(120)
        assert errors == []
        wait_until_caught_up(store_url)
        status = run_ledger("projections", "status", "--format", "json", db=store_url)
        body = json.loads(status.stdout)
        assert body["head"] == 40 + 3 * 120
        for row in body["projections"]:
            assert row["position"] == body["head"] and row["lag_events"] == 0
            assert row["state"] == "following" and row["lag_seconds"] == 0
    finally:
        err = follower.stop()
    assert follower.process.returncode == 0, err
    kinds = follower.kinds()
    assert kinds[0] == "caught_up" and kinds[-1] == "stopped"
    # The writers' events arrived while following, not in one final catch-up.
    assert sum(n["applied"] for n in follower.notices if n["event"] == "caught_up") < 400
    followed = dump(store_url)
    assert len(followed["rm_timeline"]) == 400
    with Connection(parse_database_url(store_url)) as conn:
        replay.rebuild(conn, list(PROJECTIONS))
    assert dump(store_url) == followed


def test_run_catches_up_and_status_reports_lag(store_url: str) -> None:
    append_url(store_url, history(customers=2, per_customer=15, seed=2))
    before = json.loads(
        ledger_cli("projections", "status", "--format", "json", db=store_url).stdout
    )
    assert before["head"] == 30
    timeline = before["projections"][0]
    assert (timeline["name"], timeline["position"], timeline["lag_events"]) == ("timeline", 0, 30)
    assert timeline["state"] == "behind" and timeline["lag_seconds"] > 0
    assert timeline["rebuild"] is None
    ran = ledger_cli("projections", "run", "tasks", "emails", "--format", "json", db=store_url)
    assert json.loads(ran.stdout) == {
        "projections": ["tasks", "emails"],
        "applied": 30,
        "position": 30,
        "head": 30,
        "stopped": [],
    }
    human = ledger_cli("projections", "status", db=store_url).stdout.splitlines()
    assert human[0] == "head: position 30"
    rows = {line.split()[0]: line.split() for line in human[2:]}
    assert rows["tasks"][1:5] == ["30", "0", "0.0", "up"]
    assert rows["visits"][1:3] == ["0", "30"] and rows["visits"][4] == "behind"
    unknown = ledger_cli("projections", "run", "faxes", db=store_url)
    assert unknown.returncode == 2 and "unknown projection 'faxes'" in unknown.stderr


def test_read_with_head_gives_the_tracking_rows_and_the_head_in_one_statement(
    app: LedgerApplication,
) -> None:
    with Connection(app.url) as conn:
        ensure_schema(conn)
        found, head = tracking.read_with_head(conn, ["timeline", "tasks"])
        assert head == 0 and {n: t.position for n, t in found.items()} == {
            "tasks": 0,
            "timeline": 0,
        }
        assert tracking.read_with_head(conn, ["nothing"]) == ({}, 0)
        append(app, history(customers=2, per_customer=3, seed=2))
        Runner(conn, [Target.live(p) for p in PROJECTIONS if p.name == "timeline"]).catch_up()
        append(app, [event("customer.created", "c-late", {"card": {"name": "Late"}})])
        found, head = tracking.read_with_head(conn, ["timeline", "tasks", "nothing"])
        assert head == head_position(conn)
        assert found == tracking.read(conn, ["timeline", "tasks"])
        assert found["timeline"].position == head - 1
