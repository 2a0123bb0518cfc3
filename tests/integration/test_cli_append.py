"""`ledger append`, `ledger demo` and bad input through the real console script."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_runner import run_ledger
from tests.factories import event, ndjson


def test_append_from_stdin_and_file_with_summary(store_url: str, tmp_path: Path) -> None:
    events = [
        event("customer.created", "c1", {"card": {}}),
        event("note.added", "c1", {"note_id": "n", "text": "hi"}),
    ]
    result = run_ledger("append", "-", db=store_url, stdin=ndjson(events))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "appended 2, duplicates 0, rejected 0"
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))  # a JSON array this time
    result = run_ledger("append", str(path), "--format", "json", db=store_url)
    assert result.returncode == 0
    assert json.loads(result.stdout) | {"first_position": None} == {
        "appended": 0,
        "duplicates": 2,
        "rejected": [],
        "stored": True,
        "first_position": None,
        "last_position": None,
    }


def test_rejections_print_one_line_each_and_exit_1(store_url: str) -> None:
    good = event("customer.created", "c1", {"card": {}})
    bad = event(
        "task.completed", "c1", {"task_id": "t9"}, event_id="6f1e3f8e-1c51-4a7e-9f7e-2b1d2e3c4d5e"
    )
    result = run_ledger("append", db=store_url, stdin=ndjson([good, bad]) + '{"type": 1}\n')
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "line 2 (event_id 6f1e3f8e-1c51-4a7e-9f7e-2b1d2e3c4d5e, type task.completed): "
        "data.task_id: task 't9' does not exist for this customer",
        "line 3 (event_id -, type -): type: unknown event type '1'",
    ]
    assert "nothing stored" in result.stdout
    # --skip-invalid stores the good one, still exits 1 for the rejected ones.
    result = run_ledger("append", "--skip-invalid", db=store_url, stdin=ndjson([good, bad]))
    assert result.returncode == 1
    assert result.stdout.startswith("appended 1, duplicates 0, rejected 1")


def test_bad_configuration_and_unreachable_database_are_one_line(tmp_path: Path) -> None:
    cases = [
        (["--db", "mysql://x/y", "append", "-"], 2, "error: bad database URL 'mysql://x/y'"),
        (
            ["--db", "postgresql://u@127.0.0.1:notaport/x", "append", "-"],
            2,
            "port must be a number from 1 to 65535",
        ),
        (
            ["--db", "postgresql://postgres@127.0.0.1:1/x?connect_timeout=1", "append", "-"],
            3,
            # libpq's reason and its hint, as sentences of one line (no escaped line breaks).
            "error: cannot open database postgresql://postgres@127.0.0.1:1/x?schema=public: "
            'connection failed: connection to server at "127.0.0.1", port 1 failed: '
            "Connection refused. Is the server running on that host and accepting TCP/IP "
            "connections?",
        ),
        (
            ["--db", f"sqlite:///{tmp_path}/no/such/dir/x.db", "append", "-"],
            3,
            "error: cannot open database sqlite:///",
        ),
        (
            ["--db", f"sqlite:///{tmp_path}/x.db", "append", str(tmp_path / "missing.ndjson")],
            2,
            "No such file or directory",
        ),
        (
            [
                "--db",
                f"sqlite:///{tmp_path}/x.db",
                "--rights",
                str(tmp_path / "nope.toml"),
                "append",
                "-",
            ],
            2,
            "rights policy",
        ),
    ]
    for args, code, message in cases:
        result = run_ledger(*args, stdin="")
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "\\x0" not in result.stderr, result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_ledger(
        "--debug",
        "--db",
        "postgresql://postgres@127.0.0.1:1/x?connect_timeout=1",
        "append",
        "-",
        stdin="",
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_malformed_array_input_stores_nothing(sqlite_url: str) -> None:
    created = json.dumps(event("customer.created", "c1", {"card": {}}))
    result = run_ledger("append", db=sqlite_url, stdin=f"[{created} {created}]")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: input: line 1: expected ',' or ']' in JSON array; nothing stored"
    )
    assert run_ledger("append", db=sqlite_url, stdin=created).stdout.startswith("appended 1")


def test_demo_is_idempotent_and_previews_a_customer(tmp_path: Path) -> None:
    first = run_ledger("demo", cwd=tmp_path, env={"LEDGER_DATABASE_URL": ""})
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "ledger.db").exists()  # the documented default store
    assert "appended 485, duplicates 0" in first.stdout
    assert "Previous interactions of cust-1001" in first.stdout
    second = run_ledger("demo", "--format", "json", cwd=tmp_path, env={"LEDGER_DATABASE_URL": ""})
    body = json.loads(second.stdout)
    assert (body["appended"], body["duplicates"]) == (0, 485)
    assert len(body["items"]) == 15 and body["customer_id"] == "cust-1001"


def test_workers_without_auto_migrate_ask_for_db_migrate(store_url: str) -> None:
    no_auto = {"LEDGER_AUTO_MIGRATE": "0"}
    created = ndjson([event("customer.created", "c1", {"card": {}})])
    result = run_ledger("append", db=store_url, stdin=created, env=no_auto)
    assert result.returncode == 2
    assert "the ledger's tables are missing; run `ledger db migrate`" in result.stderr
    assert "Traceback" not in result.stderr
    migrated = run_ledger("db", "migrate", db=store_url, env=no_auto)
    assert migrated.returncode == 0 and "schema up to date" in migrated.stdout
    assert run_ledger("append", db=store_url, stdin=created, env=no_auto).returncode == 0
    status = run_ledger("relay", "status", "--format", "json", db=store_url, env=no_auto)
    assert status.returncode == 0, status.stderr
