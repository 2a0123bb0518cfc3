"""People by name, on both stores: the latest `actor.name` the ledger has seen
for each `kind:id`, the people directory winning over it, the id as the
fallback; on the tabs' JSON and the CLI's tables alike."""

from __future__ import annotations

from pathlib import Path

from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.people import load_directory
from services.bootstrap import prepare_store
from services.people import display_name
from services.tabs import tab_answer, tab_request, tab_rows
from tests.cli_runner import run_ledger
from tests.factories import append_to_url, event

MARIA_OLD = {"kind": "user", "id": "u-1", "name": "Maria"}
MARIA = {"kind": "user", "id": "u-1", "name": "Maria Keller"}
IVAN = {"kind": "user", "id": "u-2", "name": "Ivan"}
NAMELESS_U1 = {"kind": "user", "id": "u-1"}
CRM = {"kind": "system", "id": "crm"}


def _history() -> list[dict[str, object]]:
    at = "2026-10-01T10:{:02d}:00Z".format
    return [
        event(
            "customer.created", "c1", {"card": {"name": "Ann"}}, actor=MARIA_OLD, occurred_at=at(0)
        ),
        event(
            "task.created",
            "c1",
            {"task_id": "t1", "title": "Call back", "assignee_id": "u-2"},
            actor=IVAN,
            occurred_at=at(1),
        ),
        event(
            "task.created",
            "c1",
            {"task_id": "t2", "title": "Send offer", "assignee_id": "u-3"},
            actor=CRM,
            occurred_at=at(2),
        ),
        event(
            "task.created",
            "c1",
            {"task_id": "t3", "title": "Ask again", "assignee_id": "u-9"},
            actor=CRM,
            occurred_at=at(3),
        ),
        # The newest name wins, whenever the event says it happened.
        event("note.added", "c1", {"note_id": "n1", "text": "hi"}, actor=MARIA, occurred_at=at(4)),
        event(
            "task.edited",
            "c1",
            {"task_id": "t1", "changes": [{"field": "assignee_id", "old": "u-2", "new": "u-1"}]},
            actor=NAMELESS_U1,
            occurred_at=at(5),
        ),
    ]


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    # u-3 never acted; u-2's name is corrected.
    path.write_text("id,name\nu-3,Olga Petrova\nu-2,Ivan Petrov\n")
    return path


def test_names_on_the_tabs(store_url: str, tmp_path: Path) -> None:
    append_to_url(store_url, _history())
    directory = load_directory(_directory(tmp_path))
    with Connection(parse_database_url(store_url)) as conn:
        prepare_store(conn)
        tasks = tab_rows(conn, tab_request("c1", "tasks", people=directory))
        by_task = {t["task_id"]: t for t in tasks["items"]}
        assert by_task["t1"]["assignee_name"] == "Maria Keller"  # the latest name seen
        assert by_task["t2"]["assignee_name"] == "Olga Petrova"  # only the directory knows
        assert by_task["t3"]["assignee_name"] is None  # nobody knows u-9
        timeline = tab_rows(conn, tab_request("c1", "timeline", people=directory))
        by_type = {i["type"]: i for i in timeline["items"]}
        # An event without a name, an event with an older one: the latest.
        assert by_type["task.edited"]["actor"] == {**NAMELESS_U1, "name": "Maria Keller"}
        assert by_type["customer.created"]["actor"]["name"] == "Maria Keller"
        assert by_type["task.edited"]["summary"] == (
            "Task “Call back” edited: Assignee: Ivan Petrov → Maria Keller"
        )
        assert [i["actor"]["name"] for i in timeline["items"] if i["actor"]["id"] == "u-2"] == [
            "Ivan Petrov"  # the directory wins over what the events said
        ]
        assert [i["actor"]["name"] for i in timeline["items"] if i["actor"]["id"] == "crm"] == [
            None,
            None,
        ]
        # Without the directory: what the events said.
        plain = tab_rows(conn, tab_request("c1", "tasks"))
        assert {t["task_id"]: t["assignee_name"] for t in plain["items"]} == {
            "t1": "Maria Keller",
            "t2": None,
            "t3": None,
        }
        # The API's typed answer is the same JSON.
        assert (
            tab_answer(conn, tab_request("c1", "tasks", people=directory)).model_dump(mode="json")
            == tasks
        )
        assert display_name(conn, "u-9", directory) == "u-9"
        assert display_name(conn, "system:crm", directory) == "system:crm"
        assert display_name(conn, "user:u-3", directory) == "Olga Petrova"
        assert display_name(conn, "u-2") == "Ivan"


def test_the_cli_shows_names(store_url: str, tmp_path: Path) -> None:
    append_to_url(store_url, _history())
    people = _directory(tmp_path)
    tasks = run_ledger("--people", str(people), "tab", "c1", "tasks", db=store_url)
    assert tasks.returncode == 0, tasks.stderr
    assert "Olga Petrova" in tasks.stdout and "Maria Keller" in tasks.stdout
    assert " u-3 " not in tasks.stdout and "u-9" in tasks.stdout  # the id as the fallback
    timeline = run_ledger(
        "tab", "c1", "timeline", db=store_url, env={"LEDGER_PEOPLE_FILE": str(people)}
    )
    assert timeline.returncode == 0, timeline.stderr
    assert "Assignee: Ivan Petrov → Maria Keller" in timeline.stdout
    assert "user:u-1" not in timeline.stdout and "system:crm" in timeline.stdout
    bad = run_ledger("--people", str(tmp_path / "missing.csv"), "tab", "c1", "tasks", db=store_url)
    assert bad.returncode == 2 and "people file" in bad.stderr
