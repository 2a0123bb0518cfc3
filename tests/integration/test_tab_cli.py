"""`ledger tab` through the real CLI, on both stores: read-your-writes, output
formats, paging, and clear errors for bad input."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import ledger
from tests.cli_runner import run_ledger
from tests.factories import event, ndjson


def cli(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(ledger, ["--db", url, *args], input=stdin)


def tab_json(url: str, *args: str) -> dict[str, Any]:
    result = cli(url, "tab", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def note(i: int, at: str = "2026-10-01T10:00:00Z") -> dict[str, Any]:
    return event("note.added", "c1", {"note_id": f"n{i}", "text": f"note {i}"}, occurred_at=at)


def created() -> dict[str, Any]:
    return event(
        "customer.created", "c1", {"card": {"name": "Ann"}}, occurred_at="2026-09-30T10:00:00Z"
    )


def test_tab_shows_what_append_just_stored(store_url: str) -> None:
    assert cli(store_url, "append", "-", stdin=ndjson([created(), note(1)])).exit_code == 0
    first = tab_json(store_url, "c1", "timeline")
    assert [i["type"] for i in first["items"]] == ["note.added", "customer.created"]
    # No projector runs: `tab` itself catches the read model up before answering.
    for i in range(2, 5):
        stored = cli(store_url, "append", "-", stdin=ndjson([note(i, f"2026-10-0{i}T10:00:00Z")]))
        assert stored.exit_code == 0
        latest = tab_json(store_url, "c1", "timeline", "--limit", "1")["items"][0]
        assert latest["data"]["note_id"] == f"n{i}"
    card = tab_json(store_url, "c1", "card")
    assert card["items"][0]["field"] == "name" and card["items"][0]["new"] == "Ann"


def test_real_processes_read_their_writes(store_url: str) -> None:
    appended = run_ledger("append", "--format", "json", db=store_url, stdin=ndjson([created()]))
    assert appended.returncode == 0, appended.stderr
    shown = run_ledger("tab", "c1", "timeline", db=store_url)
    assert shown.returncode == 0, shown.stderr
    assert "Customer card created: Ann" in shown.stdout
    assert run_ledger("append", db=store_url, stdin=ndjson([note(7)])).returncode == 0
    again = run_ledger("tab", "c1", "timeline", "--format", "json", db=store_url)
    assert json.loads(again.stdout)["items"][0]["summary"] == "Note: note 7"


def test_human_tables_and_paging(store_url: str) -> None:
    events = [created()] + [note(i, f"2026-10-0{i}T10:00:00Z") for i in range(1, 6)]
    events.append(
        event(
            "task.created",
            "c1",
            {"task_id": "t1", "title": "Call back", "due_at": "2026-10-09T09:00:00+02:00"},
        )
    )
    assert cli(store_url, "append", "-", stdin=ndjson(events)).exit_code == 0
    page = cli(store_url, "tab", "c1", "timeline", "--limit", "2", "--kind", "notes")
    assert page.exit_code == 0
    lines = page.stdout.splitlines()
    assert lines[0] == "c1: timeline (2 items)"
    assert lines[2].split() == ["OCCURRED", "(UTC)", "KIND", "SUMMARY", "BY"]
    assert lines[3].split()[:4] == ["2026-10-05", "10:00", "notes", "Note:"]
    # The command for the next page: this one's options and the cursor.
    command = shlex.split(lines[-1].removeprefix("more: "))
    assert command[:-1] == [
        *("ledger", "tab", "c1", "timeline", "--kind", "notes", "--limit", "2", "--cursor")
    ]
    cursor = command[-1]
    seen = []
    while cursor:
        answer = tab_json(
            store_url, "c1", "timeline", "--kind", "notes", "--limit", "2", "--cursor", cursor
        )
        seen += [i["data"]["note_id"] for i in answer["items"]]
        cursor = answer["next_cursor"]
    assert seen == ["n3", "n2", "n1"]
    window = tab_json(
        store_url, "c1", "timeline", "--since", "2026-10-02", "--until", "2026-10-03T12:00:00+02:00"
    )
    assert [i["data"]["note_id"] for i in window["items"]] == ["n2"]
    tasks = cli(store_url, "tab", "c1", "tasks")
    assert "Call back" in tasks.stdout and "edit, complete, delete" in tasks.stdout
    assert "2026-10-09 07:00" in tasks.stdout  # due time shown in UTC


def test_tasks_actions_follow_the_rights_policy(store_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "rights.toml"
    policy.write_text('[roles]\nagent = ["tasks.edit"]\n[users]\nu-7 = ["agent"]\n')
    events = [created(), event("task.created", "c1", {"task_id": "t1", "title": "Call"})]
    assert cli(store_url, "append", "-", stdin=ndjson(events)).exit_code == 0
    as_agent = CliRunner().invoke(
        ledger,
        [
            "--db",
            store_url,
            "--rights",
            str(policy),
            "tab",
            "c1",
            "tasks",
            "--as",
            "u-7",
            "--format",
            "json",
        ],
    )
    assert json.loads(as_agent.stdout)["items"][0]["actions"] == ["edit", "complete"]
    assert tab_json(store_url, "c1", "tasks")["items"][0]["actions"] == [
        "edit",
        "complete",
        "delete",
    ]


def test_an_unknown_customer_is_not_found_with_one_line(store_url: str) -> None:
    # One meaning on every door (docs/cli.md): no customer, not an empty tab.
    for tab in ("timeline", "emails"):
        for fmt in ("human", "json"):
            result = cli(store_url, "tab", "nobody", tab, "--format", fmt)
            assert result.exit_code == 1, result.output
            assert result.stdout == ""
            assert result.stderr.strip() == "error: no customer 'nobody'"
    # A known customer with an empty tab is still an empty tab.
    assert cli(store_url, "append", "-", stdin=ndjson([created()])).exit_code == 0
    human = cli(store_url, "tab", "c1", "emails")
    assert human.exit_code == 0 and human.stdout.strip() == "c1: emails (0 items)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["c1", "calls"], "Invalid value for 'TAB': 'calls' is not one of 'timeline'"),
        (["c1", "timeline", "--cursor", "not-a-cursor"], "bad cursor"),
        (["c1", "timeline", "--kind", "faxes"], "'faxes' is not one of 'calls'"),
        (["c1", "timeline", "--since", "yesterday"], "--since: 'yesterday' is not a date"),
        (["c1", "timeline", "--until", "2026-10-01T10:00:00"], "needs a time zone"),
        (["c1", "timeline", "--limit", "0"], "0 is not in the range"),
        (["c1", "tasks", "--kind", "notes"], "--kind applies to the timeline tab only"),
        (["c1", "visits", "--as", "u-1"], "--as applies to the tasks tab only"),
    ],
)
def test_bad_input_is_a_clear_usage_error(sqlite_url: str, args: list[str], message: str) -> None:
    result = cli(sqlite_url, "tab", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
