"""Blue/green rebuilds on both stores: the live model answers and follows
throughout, the swap is atomic; reset for operators who accept downtime."""

from __future__ import annotations

import json
import threading

from click.testing import CliRunner

from cli.main import ledger
from ledger.config import parse_database_url
from ledger.db import Connection
from projections.registry import PROJECTIONS
from projections.schema import ensure_schema
from tests.cli_runner import ledger_cli, run_ledger
from tests.factories import append_to_url as append_url
from tests.projection_support import (
    FollowerProcess,
    concurrent_writer,
    dump,
    history,
    positions,
    wait_until_caught_up,
)


def test_rebuild_while_writers_append_and_the_live_model_follows(store_url: str) -> None:
    append_url(store_url, history(customers=10, per_customer=60, seed=21))
    with Connection(parse_database_url(store_url)) as conn:
        ensure_schema(conn)
    follower = FollowerProcess(store_url, "--interval", "0.1")
    try:
        follower.wait_for("caught_up")
        errors: list[BaseException] = []
        writers = [
            threading.Thread(target=concurrent_writer, args=(store_url, f"r{i}-", 30 + i, errors))
            for i in range(2)
        ]
        for w in writers:
            w.start()
        answers = []
        rebuild = threading.Thread(
            target=lambda: answers.append(
                CliRunner().invoke(
                    ledger,
                    [
                        "--db",
                        store_url,
                        "projections",
                        "rebuild",
                        "--all",
                        "--batch-size",
                        "100",
                        "--format",
                        "json",
                    ],
                )
            )
        )
        rebuild.start()
        # The live tab answers during the rebuild.
        while rebuild.is_alive():
            shown = run_ledger("tab", "c1", "timeline", "--format", "json", db=store_url)
            assert shown.returncode == 0 and json.loads(shown.stdout)["items"]
        for w in writers:
            w.join(120)
        assert errors == []
        [result] = answers
        assert result.exit_code == 0, result.output
        done = json.loads(result.stdout.splitlines()[-1])
        assert done["event"] == "done" and done["resumed"] == []
        progress = [json.loads(line) for line in result.stdout.splitlines()[:-1]]
        assert {p["phase"] for p in progress} >= {"load", "index", "swap"}
        wait_until_caught_up(store_url)
    finally:
        err = follower.stop()
    assert follower.process.returncode == 0, err
    followed = dump(store_url)
    assert len(followed["rm_timeline"]) == 600 + 2 * 120
    # Compare with a rebuild from scratch, after the follower has stopped.
    assert run_ledger("projections", "reset", "--all", "--yes", db=store_url).returncode == 0
    assert run_ledger("projections", "run", db=store_url).returncode == 0
    assert dump(store_url) == followed


def test_reset_empties_and_the_next_read_refills(store_url: str) -> None:
    append_url(store_url, history(customers=3, per_customer=20, seed=4))
    assert ledger_cli("projections", "run", db=store_url).returncode == 0
    full = dump(store_url)
    refused = ledger_cli("projections", "reset", "visits", db=store_url, stdin="")
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    reset = ledger_cli("projections", "reset", "visits", "card", "--yes", db=store_url)
    assert reset.returncode == 0 and reset.stdout.startswith("reset visits, card")
    now = positions(store_url)
    assert (now["visits"], now["card"], now["timeline"]) == (0, 0, 60)
    assert dump(store_url)["rm_visits"] == []
    # `tab` catches its own projection up before answering.
    card = ledger_cli("tab", "c0", "card", "--format", "json", db=store_url)
    assert json.loads(card.stdout)["items"]
    assert dump(store_url)["rm_card_history"] == full["rm_card_history"]


def test_outdated_layout_asks_for_a_rebuild(store_url: str) -> None:
    append_url(store_url, history(customers=1, per_customer=5, seed=4))
    assert ledger_cli("projections", "run", db=store_url).returncode == 0
    with Connection(parse_database_url(store_url)) as conn:
        conn.execute("UPDATE projection_tracking SET version = 0 WHERE name = 'tasks'")
    status = json.loads(
        ledger_cli("projections", "status", "--format", "json", db=store_url).stdout
    )
    assert {p["name"]: p["state"] for p in status["projections"]}["tasks"] == "outdated"
    shown = ledger_cli("tab", "c0", "tasks", db=store_url)
    assert shown.returncode == 1
    assert "run `ledger projections rebuild tasks`" in shown.stderr
    fixed = ledger_cli("projections", "rebuild", "tasks", db=store_url)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.startswith("rebuilt tasks: 5 events")
    assert ledger_cli("tab", "c0", "tasks", db=store_url).returncode == 0
    assert [p.name for p in PROJECTIONS if positions(store_url)[p.name] != 5] == []
