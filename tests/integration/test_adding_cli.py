"""`ledger note add` and `ledger task add`: the same service as the API's, on
both stores; what they print; an unknown customer and a bad due time."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from cli.main import ledger
from tests.factories import append_to_url, event


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(ledger, ["--db", url, *args])


def tab(url: str, customer: str, name: str) -> list[dict[str, Any]]:
    result = cli(url, "tab", customer, name, "--format", "json")
    assert result.exit_code == 0, result.output
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


def test_note_add_and_task_add_show_in_the_tabs_at_once(store_url: str) -> None:
    append_to_url(store_url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    note = cli(store_url, "note", "add", "c1", "Prefers mornings", "--as", "u-1")
    assert note.exit_code == 0, note.output
    assert note.stdout.startswith("note note-") and "Prefers mornings" in note.stdout
    first = tab(store_url, "c1", "timeline")[0]
    assert first["type"] == "note.added" and first["actor"]["id"] == "u-1"
    assert first["data"]["text"] == "Prefers mornings"

    added = cli(
        store_url,
        *("task", "add", "c1", "Call back", "--due", "2026-11-02T09:00:00Z"),
        *("--assignee", "u-2", "--as", "u-1", "--format", "json"),
    )
    assert added.exit_code == 0, added.output
    answer = json.loads(added.stdout)
    assert answer["stored"] is True
    task = answer["task"]
    assert (task["title"], task["assignee_id"], task["status"]) == ("Call back", "u-2", "pending")
    assert tab(store_url, "c1", "tasks") == [{**task, "actions": ["edit", "complete", "delete"]}]

    human = cli(store_url, "task", "add", "c1", "Send\x1b[31m invoice", "--as", "u-1")
    assert human.exit_code == 0, human.output
    assert "\x1b" not in human.stdout and "added: Send" in human.stdout
    # The same key adds once.
    for _ in range(2):
        keyed = cli(store_url, "note", "add", "c1", "once", "--as", "u-1", "--idempotency-key", "k")
        assert keyed.exit_code == 0, keyed.output
    assert [i["data"].get("text") for i in tab(store_url, "c1", "timeline")].count("once") == 1


def test_refusals_are_one_line_with_exit_1(store_url: str) -> None:
    append_to_url(store_url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    missing = cli(store_url, "note", "add", "nobody", "hello", "--as", "u-1")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: no customer 'nobody'"
    bad = cli(store_url, "task", "add", "c1", "x", "--due", "soon", "--as", "u-1")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: due_at:")
    assert len(tab(store_url, "c1", "timeline")) == 1
