"""Faults with real processes: a projector SIGKILLed mid-batch, a rebuild killed
half-way, and (PostgreSQL) a follower whose database connections are cut."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psycopg

from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.reading import head_position
from projections import rebuild as replay
from projections.registry import PROJECTIONS
from projections.schema import ensure_schema
from projections.tables import existing_tables
from tests.cli_runner import LEDGER, ledger_cli, run_ledger
from tests.conftest import PG_URL
from tests.factories import append_to_url as append_url
from tests.factories import event
from tests.projection_support import FollowerProcess, dump, history, positions


def _store_with_history(url: str, customers: int = 20, per_customer: int = 100) -> int:
    append_url(url, history(customers=customers, per_customer=per_customer, seed=11))
    with Connection(parse_database_url(url)) as conn:
        ensure_schema(conn)
        return head_position(conn)


def _wait_for_position(url: str, name: str, low: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        position = positions(url).get(name, 0)
        if position > low:
            return position
        assert time.monotonic() < deadline, f"{name} never passed {low}"
        time.sleep(0.005)


def _rebuilt(url: str) -> dict[str, list[tuple[object, ...]]]:
    with Connection(parse_database_url(url)) as conn:
        replay.rebuild(conn, list(PROJECTIONS))
    return dump(url)


def test_projector_killed_mid_run_resumes_exactly(store_url: str) -> None:
    head = _store_with_history(store_url)
    for kill_after in (head // 4, head // 2):
        follower = FollowerProcess(store_url, "--batch-size", "7", "--interval", "0.1")
        at_kill = _wait_for_position(store_url, "timeline", kill_after)
        os.kill(follower.process.pid, signal.SIGKILL)
        follower.kill()
        # Killed while catching up: the test did hit a run in progress.
        assert at_kill < head
        tracked = positions(store_url)
        with Connection(parse_database_url(store_url)) as conn:
            timeline_rows = conn.fetchone("SELECT COUNT(*) FROM rm_timeline")
        # Rows and position were committed together: one row per event up to the position.
        assert timeline_rows == (tracked["timeline"],)
    restarted = run_ledger("projections", "run", "--all", "--format", "json", db=store_url)
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["position"] == head
    resumed = dump(store_url)
    assert len(resumed["rm_timeline"]) == head
    assert _rebuilt(store_url) == resumed


def _kill_rebuild_half_way(url: str, head: int) -> None:
    process = subprocess.Popen(
        [
            *(LEDGER, "projections", "rebuild", "--all", "--format", "json"),
            *("--batch-size", "20", "--checkpoint-events", "60"),
        ],
        env={**os.environ, "LEDGER_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    at_kill = _wait_for_position(url, "timeline~rebuild", head // 3)
    process.kill()
    process.wait(30)
    assert at_kill < head
    # Killed between checkpoints: the shadow holds exactly the events up to its position.
    with Connection(parse_database_url(url)) as conn:
        shadow_rows = conn.fetchone("SELECT COUNT(*) FROM rm_timeline__rebuild")
    assert shadow_rows == (positions(url)["timeline~rebuild"],)


def test_killed_rebuild_leaves_live_untouched_and_resumes_or_discards(store_url: str) -> None:
    head = _store_with_history(store_url)
    assert ledger_cli("projections", "run", db=store_url).returncode == 0
    live = dump(store_url)
    tab_before = ledger_cli("tab", "c3", "timeline", "--format", "json", db=store_url).stdout

    _kill_rebuild_half_way(store_url, head)
    assert dump(store_url) == live
    assert ledger_cli("tab", "c3", "timeline", "--format", "json", db=store_url).stdout == (
        tab_before
    )
    status = json.loads(
        ledger_cli("projections", "status", "--format", "json", db=store_url).stdout
    )
    rebuild = status["projections"][0]["rebuild"]
    assert rebuild["phase"] == "loading" and 0 < rebuild["position"] < head
    human = ledger_cli("projections", "status", db=store_url).stdout
    assert "loading at" in human

    # A live append meanwhile: the live model follows it, the resumed rebuild picks it up.
    append_url(store_url, [event("note.added", "c3", {"note_id": "late", "text": "late"})])
    assert ledger_cli("projections", "run", db=store_url).returncode == 0
    resumed = ledger_cli("projections", "rebuild", "--all", "--format", "json", db=store_url)
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads(resumed.stdout.splitlines()[-1])
    assert done["event"] == "done" and done["position"] == head + 1
    assert set(done["resumed"]) == {p.name for p in PROJECTIONS}
    assert 0 < done["events"] < head + 1  # it did not start over
    rebuilt = dump(store_url)
    assert len(rebuilt["rm_timeline"]) == head + 1
    assert _rebuilt(store_url) == rebuilt

    _kill_rebuild_half_way(store_url, head)
    discarded = ledger_cli("projections", "rebuild", "--all", "--discard", db=store_url)
    assert discarded.returncode == 0
    assert discarded.stdout.startswith("discarded unfinished rebuild of timeline")
    assert dump(store_url) == rebuilt
    with Connection(parse_database_url(store_url)) as conn:
        names = [r[0] for r in conn.fetchall("SELECT name FROM projection_tracking")]
        tables = existing_tables(conn)
    assert sorted(names) == sorted(p.name for p in PROJECTIONS)
    assert not [t for t in tables if t.endswith(("__rebuild", "__old"))]


def _cut_connections(application_name: str) -> int:
    conninfo = parse_database_url(PG_URL).conninfo()
    with psycopg.connect(conninfo, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


def test_follower_survives_the_database_going_away(pg_url: str) -> None:
    _store_with_history(pg_url, customers=2, per_customer=10)
    name = f"follower-{os.getpid()}"
    follower = FollowerProcess(
        pg_url,
        "--interval",
        "0.2",
        "--max-backoff",
        "0.5",
        env={"PGAPPNAME": name},
    )
    try:
        follower.wait_for("caught_up")
        for round_ in (1, 2):
            assert _cut_connections(name) >= 1
            append_url(
                pg_url, [event("note.added", "c1", {"note_id": f"cut{round_}", "text": "x"})]
            )
            follower.wait_for("resumed", count=round_)
            follower.wait_for("caught_up", count=round_ + 1)
        with Connection(parse_database_url(pg_url)) as conn:
            head = head_position(conn)
        deadline = time.monotonic() + 20
        while positions(pg_url)["timeline"] < head:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        err = follower.stop()
    unavailable = [n for n in follower.notices if n["event"] == "unavailable"]
    assert len(unavailable) >= 2 and all(n["retry_in"] > 0 for n in unavailable)
    assert follower.process.returncode == 0, err
    assert set(positions(pg_url).values()) == {head}
