"""Task actions under an `Idempotency-Key`: every request with one key gets the
answer of the one event it stored (concurrent or later retries, API or CLI), and
a key reused for another action or task is refused without storing anything."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cli.main import ledger
from tests.factories import append_to_url, event
from tests.http_support import serve_in_thread

CONCURRENT = 50


def created() -> dict[str, Any]:
    return event("customer.created", "c1", {"card": {"name": "Ann"}})


def task_created(task_id: str) -> dict[str, Any]:
    return event(
        "task.created",
        "c1",
        {"task_id": task_id, "title": "Call back", "due_at": "2026-11-02T09:00:00+01:00"},
    )


def history(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    answer = client.get("/v1/audit/history", params={"task": task_id})
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines()]


def types(client: httpx.Client, task_id: str) -> list[str]:
    return [row["type"] for row in history(client, task_id)]


def act(
    client: httpx.Client, task_id: str, action: str, key: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(
        f"/v1/customers/c1/tasks/{task_id}/{action}",
        params={"as": "u-1"},
        headers=headers,
        **kw,
    )


def all_at_once(
    base_url: httpx.URL, task_id: str, action: str, key: str, **kw: Any
) -> list[tuple[int, bytes]]:
    """CONCURRENT clients, each on its own connection, send the same request at
    the same moment; their (status, body) answers."""
    barrier = threading.Barrier(CONCURRENT)

    def one(_: int) -> tuple[int, bytes]:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            barrier.wait()
            answer = act(c, task_id, action, key, **kw)
            return answer.status_code, answer.content

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(one, range(CONCURRENT)))


@pytest.mark.parametrize(
    ("action", "body", "stored_type"),
    [
        ("complete", None, "task.completed"),
        ("delete", None, "task.deleted"),
        ("edit", {"changes": [{"field": "title", "new": "Visit"}]}, "task.edited"),
    ],
)
def test_same_key_sent_concurrently_gets_one_answer_and_stores_one_event(
    store_url: str, action: str, body: dict[str, Any] | None, stored_type: str
) -> None:
    append_to_url(store_url, [created(), task_created("t1")])
    with serve_in_thread(store_url) as client:
        answers = all_at_once(client.base_url, "t1", action, "k-1", json=body)
        assert len(set(answers)) == 1, sorted(set(answers))
        status, content = answers[0]
        assert status == 200, content
        assert types(client, "t1") == ["task.created", stored_type]
        # A retry after the race answers the same again.
        again = act(client, "t1", action, "k-1", json=body)
        assert (again.status_code, again.content) == (status, content)
        assert types(client, "t1") == ["task.created", stored_type]


def test_a_later_retry_answers_the_task_as_its_event_left_it(store_url: str) -> None:
    append_to_url(store_url, [created(), task_created("t1"), task_created("t2")])
    with serve_in_thread(store_url) as client:
        done = act(client, "t1", "complete", "k-1")
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed"
        assert done.json()["actions"] == ["reopen", "delete"]
        # The task moves on without the key...
        reopened = act(client, "t1", "reopen")
        assert reopened.status_code == 200 and reopened.json()["status"] == "pending"
        # ...and a retry of the keyed request still gets its own answer, not
        # the task's later state and not "already completed".
        retry = act(client, "t1", "complete", "k-1")
        assert retry.status_code == 200, retry.text
        assert retry.content == done.content
        assert types(client, "t1") == ["task.created", "task.completed", "task.reopened"]
        # The CLI is the same service: the same user's key is the same action.
        cli = CliRunner().invoke(
            ledger,
            [
                *("--db", store_url, "task", "complete", "c1", "t1", "--as", "u-1"),
                *("--idempotency-key", "k-1", "--format", "json"),
            ],
        )
        assert cli.exit_code == 0, cli.output
        out = json.loads(cli.stdout)
        assert out["task"] == done.json() and out["stored"] is False
        assert types(client, "t1") == ["task.created", "task.completed", "task.reopened"]

        # A deleted task: the retry answers the deletion again, not 404.
        deleted = act(client, "t2", "delete", "k-2")
        assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
        retry = act(client, "t2", "delete", "k-2")
        assert retry.status_code == 200 and retry.json() == {"deleted": True}
        assert types(client, "t2") == ["task.created", "task.deleted"]


def test_a_keyed_answer_is_the_task_as_its_tab_shows_it(store_url: str) -> None:
    """The keyed answer is folded from the task's events, the unkeyed one read
    from the tasks tab: the two agree."""
    append_to_url(store_url, [created(), task_created("t1"), task_created("t2")])
    with serve_in_thread(store_url) as client:
        changes = {
            "changes": [
                {"field": "title", "new": "Visit"},
                {"field": "due_at", "new": "2026-12-01T10:00:00+01:00"},
                {"field": "assignee_id", "new": "u-9"},
            ]
        }
        keyed = act(client, "t1", "edit", "k-1", json=changes)
        unkeyed = act(client, "t2", "edit", json=changes)
        assert keyed.status_code == unkeyed.status_code == 200, (keyed.text, unkeyed.text)
        assert keyed.json() == {**unkeyed.json(), "task_id": "t1"}
        keyed = act(client, "t1", "complete", "k-2")
        unkeyed = act(client, "t2", "complete")
        assert keyed.status_code == unkeyed.status_code == 200
        tab = client.get("/v1/customers/c1/tabs/tasks", params={"as": "u-1"}).json()["items"]
        assert keyed.json() == next(item for item in tab if item["task_id"] == "t1")
        assert unkeyed.json() == next(item for item in tab if item["task_id"] == "t2")


def test_a_key_reused_for_another_action_or_task_is_refused(store_url: str) -> None:
    append_to_url(store_url, [created(), task_created("t1"), task_created("t2")])
    with serve_in_thread(store_url) as client:
        edit = {"changes": [{"field": "title", "new": "Visit"}]}
        assert act(client, "t1", "edit", "k-1", json=edit).status_code == 200
        for task_id, action, body in [
            ("t1", "complete", None),  # another action
            ("t2", "edit", edit),  # another task
            ("t1", "edit", {"changes": [{"field": "title", "new": "Write"}]}),  # other changes
        ]:
            refused = act(client, task_id, action, "k-1", json=body)
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            detail = refused.json()["detail"]
            assert "idempotency key" in detail and "edit of task 't1'" in detail, detail
        assert types(client, "t1") == ["task.created", "task.edited"]
        assert types(client, "t2") == ["task.created"]
        # Keys are the acting user's own: another user's same key is another action.
        other = client.post(
            "/v1/customers/c1/tasks/t2/complete",
            params={"as": "u-2"},
            headers={"Idempotency-Key": "k-1"},
        )
        assert other.status_code == 200, other.text
        assert types(client, "t2") == ["task.created", "task.completed"]


def test_same_key_for_two_actions_at_once_stores_one(store_url: str) -> None:
    """Half the clients complete, half delete, under one key: one action wins,
    its clients all get its answer and the others 422."""
    append_to_url(store_url, [created(), task_created("t1")])
    with serve_in_thread(store_url) as client:
        barrier = threading.Barrier(10)

        def one(i: int) -> tuple[str, int, bytes]:
            action = "complete" if i % 2 else "delete"
            with httpx.Client(base_url=client.base_url, timeout=60) as c:
                barrier.wait()
                answer = act(c, "t1", action, "k-1")
                return action, answer.status_code, answer.content

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(one, range(10)))
        stored = types(client, "t1")
        assert len(stored) == 2
        winner = "complete" if stored[1] == "task.completed" else "delete"
        won = {(s, c) for a, s, c in answers if a == winner}
        lost = {s for a, s, _ in answers if a != winner}
        assert len(won) == 1 and next(iter(won))[0] == 200, won
        assert lost == {422}
