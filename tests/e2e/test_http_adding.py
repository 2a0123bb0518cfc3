"""Adding a note or a task over HTTP (`POST /v1/customers/{id}/notes` and
`.../tasks`), through the append every event takes; and an unknown customer's
one meaning on the API (404 `customer_missing`). On both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.factories import append_to_url, event
from tests.http_support import make_keys, serve_in_thread


def created(customer: str = "c1") -> dict[str, Any]:
    return event("customer.created", customer, {"card": {"name": "Ann"}})


def post(
    client: httpx.Client, what: str, body: dict[str, Any], key: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    params = kw.pop("params", {"as": "u-1"})
    return client.post(f"/v1/customers/c1/{what}", json=body, params=params, headers=headers, **kw)


def timeline(client: httpx.Client, customer: str = "c1") -> list[dict[str, Any]]:
    answer = client.get(f"/v1/customers/{customer}/tabs/timeline")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_a_note_is_added_and_shows_at_once(store_url: str) -> None:
    append_to_url(store_url, [created()])
    with serve_in_thread(store_url) as client:
        answer = post(client, "notes", {"text": "Prefers <b>mornings</b>"})
        assert answer.status_code == 201, answer.text
        note = answer.json()
        assert note["type"] == "note.added" and note["kind"] == "notes"
        # The acting user by the name the ledger last saw for them (the factory's
        # events are by "Maria"), as the timeline tab names them.
        assert note["actor"] == {"kind": "user", "id": "u-1", "name": "Maria"}
        assert note["data"]["text"] == "Prefers <b>mornings</b>"
        assert note["data"]["note_id"].startswith("note-")  # the server's id
        assert timeline(client)[0] == note  # the tab shows it, the same item


def test_a_task_is_added_and_shows_at_once(store_url: str) -> None:
    append_to_url(store_url, [created()])
    with serve_in_thread(store_url) as client:
        body = {"title": "Call back", "due_at": "2026-11-02T09:00:00+01:00", "assignee_id": "u-2"}
        answer = post(client, "tasks", body)
        assert answer.status_code == 201, answer.text
        task = answer.json()
        assert task["title"] == "Call back" and task["status"] == "pending"
        assert task["assignee_id"] == "u-2"
        assert task["due_at"] == "2026-11-02T09:00:00+01:00"  # as given
        assert task["actions"] == ["edit", "complete", "delete"]
        tasks = client.get("/v1/customers/c1/tabs/tasks", params={"as": "u-1"}).json()["items"]
        assert tasks == [task]
        assert timeline(client)[0]["actor"]["id"] == "u-1"


def test_the_same_idempotency_key_adds_once(store_url: str) -> None:
    append_to_url(store_url, [created(), created("c2")])
    with serve_in_thread(store_url) as client:
        first = post(client, "tasks", {"title": "Call back"}, key="k-1")
        again = post(client, "tasks", {"title": "Call back"}, key="k-1")
        assert first.status_code == again.status_code == 201, again.text
        assert first.json() == again.json()
        tasks = client.get("/v1/customers/c1/tabs/tasks").json()["items"]
        assert [t["task_id"] for t in tasks] == [first.json()["task_id"]]
        # The key reused for another title, or for a note, is refused; nothing stored.
        other = post(client, "tasks", {"title": "Something else"}, key="k-1")
        assert other.status_code == 422, other.text
        problem = other.json()
        assert problem["code"] == "key_reused" and problem["field"] == "idempotency_key"
        note = post(client, "notes", {"text": "x"}, key="k-1")
        assert note.status_code == 422 and note.json()["code"] == "key_reused"
        # Notes: the same.
        n1 = post(client, "notes", {"text": "hello"}, key="n-1")
        n2 = post(client, "notes", {"text": "hello"}, key="n-1")
        assert n1.status_code == n2.status_code == 201 and n1.json() == n2.json()
        kinds = [i["type"] for i in timeline(client)]
        assert kinds == ["note.added", "task.created", "customer.created"]
        # Another user's same key is another request.
        mine = post(client, "notes", {"text": "hello"}, key="n-1", params={"as": "u-2"})
        assert mine.status_code == 201 and mine.json()["event_id"] != n1.json()["event_id"]


def test_refusals_are_problems_with_the_rules_code_and_field(store_url: str) -> None:
    append_to_url(store_url, [created()])
    with serve_in_thread(store_url) as client:
        missing = client.post("/v1/customers/nobody/notes", json={"text": "x"}, params={"as": "u"})
        assert missing.status_code == 404, missing.text
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["code"] == "customer_missing"
        assert missing.json()["detail"] == "no customer 'nobody'"
        bad_due = post(client, "tasks", {"title": "x", "due_at": "tomorrowish"})
        assert bad_due.status_code == 422, bad_due.text
        assert bad_due.json()["code"] == "bad_time"
        assert bad_due.json()["field"] == "data.due_at"
        empty = post(client, "tasks", {"title": ""})
        assert empty.status_code == 422
        no_user = client.post("/v1/customers/c1/notes", json={"text": "x"})
        assert no_user.status_code == 400  # open mode: name the acting user
        # A task action the domain refuses keeps the rule's code and field.
        task = post(client, "tasks", {"title": "Call"}).json()
        done = client.post(f"/v1/customers/c1/tasks/{task['task_id']}/complete?as=u-1")
        assert done.status_code == 200, done.text
        twice = client.post(f"/v1/customers/c1/tasks/{task['task_id']}/complete?as=u-1")
        assert twice.status_code == 409
        problem = twice.json()
        assert (problem["code"], problem["field"]) == ("task_is_completed", "data.task_id")
        assert problem["errors"][0]["code"] == "task_is_completed"
        gone = client.post("/v1/customers/c1/tasks/no-such-task/complete?as=u-1")
        assert gone.status_code == 404 and gone.json()["code"] == "task_missing"
        assert [i["type"] for i in timeline(client)][-1] == "customer.created"


def test_scopes_are_those_of_task_actions(store_url: str, tmp_path: Path) -> None:
    append_to_url(store_url, [created()])
    keys = make_keys(tmp_path)
    with serve_in_thread(store_url, access=keys.access()) as client:
        url = "/v1/customers/c1/notes"
        own = client.post(url, json={"text": "x"}, headers=keys.auth("agent"))
        assert own.status_code == 201 and own.json()["actor"]["id"] == "u-1"
        reader = client.post(url, json={"text": "x"}, headers=keys.auth("reader"))
        assert reader.status_code == 403
        backend = client.post(
            url, json={"text": "x"}, params={"as": "u-9"}, headers=keys.auth("backend")
        )
        assert backend.status_code == 201 and backend.json()["actor"]["id"] == "u-9"
        task = client.post(
            "/v1/customers/c1/tasks",
            json={"title": "t"},
            params={"as": "u-9"},
            headers=keys.auth("agent"),
        )
        assert task.status_code == 403  # `tasks` acts as the key's own user only


def test_an_unknown_customer_is_404_on_every_tab(store_url: str) -> None:
    append_to_url(store_url, [created()])
    with serve_in_thread(store_url) as client:
        for tab in ("timeline", "tasks", "emails", "card"):
            answer = client.get(f"/v1/customers/nobody/tabs/{tab}")
            assert answer.status_code == 404, answer.text
            assert answer.json()["code"] == "customer_missing"
            assert answer.json()["detail"] == "no customer 'nobody'"
        # A known customer's empty tab is still 200 with no items.
        empty = client.get("/v1/customers/c1/tabs/emails")
        assert empty.status_code == 200 and empty.json()["items"] == []
