"""The HTTP API against a real uvicorn server on both stores: every endpoint's
happy path, answers equal to the CLI's, append semantics, task actions."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from cli.main import ledger
from ledger.demo import FEATURED_CUSTOMER, demo_events
from projections.tabs import TABS
from tests.factories import append_to_url, event, ndjson
from tests.http_support import serve_in_thread


def cli_json(url: str, *args: str) -> Any:
    result = CliRunner().invoke(ledger, ["--db", url, *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cli_text(url: str, *args: str) -> str:
    result = CliRunner().invoke(ledger, ["--db", url, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def created(customer: str = "c1") -> dict[str, Any]:
    return event("customer.created", customer, {"card": {"name": "Ann"}})


def task_created(task_id: str, customer: str = "c1") -> dict[str, Any]:
    return event(
        "task.created",
        customer,
        {"task_id": task_id, "title": "Call back", "assignee_id": "u-1"},
    )


def audit_rows(client: httpx.Client, **selector: str) -> list[dict[str, Any]]:
    answer = client.get("/v1/audit/history", params=selector)
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines()]


def test_every_tab_over_http_equals_the_cli(store_url: str) -> None:
    append_to_url(store_url, demo_events())
    with serve_in_thread(store_url) as client:
        for tab in TABS:
            answer = client.get(f"/v1/customers/{FEATURED_CUSTOMER}/tabs/{tab}")
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/json"
            assert answer.json() == cli_json(store_url, "tab", FEATURED_CUSTOMER, tab), tab
            assert answer.json()["items"], f"the demo customer's {tab} tab is empty"
        # Timeline parameters, and the tasks tab for a viewer, as the CLI has them.
        params = {"kind": ["tasks", "notes"], "limit": "3", "since": "2026-09-01"}
        page = client.get(f"/v1/customers/{FEATURED_CUSTOMER}/tabs/timeline", params=params)
        assert page.json() == cli_json(
            store_url,
            "tab",
            FEATURED_CUSTOMER,
            "timeline",
            "--kind",
            "tasks",
            "--kind",
            "notes",
            "--limit",
            "3",
            "--since",
            "2026-09-01",
        )
        nxt = client.get(
            f"/v1/customers/{FEATURED_CUSTOMER}/tabs/timeline",
            params={**params, "cursor": page.json()["next_cursor"]},
        )
        assert nxt.status_code == 200 and nxt.json()["items"][0] != page.json()["items"][0]
        viewer = client.get(f"/v1/customers/{FEATURED_CUSTOMER}/tabs/tasks", params={"as": "u-9"})
        assert viewer.json() == cli_json(
            store_url, "tab", FEATURED_CUSTOMER, "tasks", "--as", "u-9"
        )
        unknown = client.get("/v1/customers/nobody/tabs/timeline")
        assert unknown.status_code == 404  # one meaning on every door: no customer
        assert unknown.json()["code"] == "customer_missing"
        assert unknown.json()["detail"] == "no customer 'nobody'"


def test_append_then_read_your_writes(store_url: str) -> None:
    with serve_in_thread(store_url) as client:
        one = client.post("/v1/events", json=created())
        assert one.status_code == 200, one.text
        assert one.json()["appended"] == 1 and one.json()["rejected"] == []
        lines = ndjson(
            [event("note.added", "c1", {"note_id": f"n{i}", "text": "hi"}) for i in range(3)]
        )
        many = client.post(
            "/v1/events", content=lines, headers={"content-type": "application/x-ndjson"}
        )
        assert many.json()["appended"] == 3
        timeline = client.get("/v1/customers/c1/tabs/timeline").json()
        assert len(timeline["items"]) == 4
        # A retried request stores nothing twice.
        again = client.post(
            "/v1/events", content=lines, headers={"content-type": "application/x-ndjson"}
        )
        assert again.json()["appended"] == 0 and again.json()["duplicates"] == 3
        assert len(client.get("/v1/customers/c1/tabs/timeline").json()["items"]) == 4


def test_all_or_nothing_rejection_names_index_event_field_and_stores_nothing(
    store_url: str,
) -> None:
    bad = event("note.added", "c1", {"note_id": "n1"})  # no text
    unknown_task = event("task.completed", "c1", {"task_id": "t9"})
    with serve_in_thread(store_url) as client:
        answer = client.post("/v1/events", json=[created(), bad, unknown_task])
        assert answer.status_code == 422
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert problem["status"] == 422 and "nothing stored" in problem["detail"]
        assert {(e["index"], e["event_id"], e["field"]) for e in problem["errors"]} == {
            (1, bad["event_id"], "data.text"),
            (2, unknown_task["event_id"], "data.task_id"),
        }
        assert all(e["reason"] for e in problem["errors"])
        nothing = client.get("/v1/customers/c1/tabs/timeline")  # not even the customer
        assert nothing.status_code == 404 and nothing.json()["code"] == "customer_missing"
        assert audit_rows(client, customer="c1") == []
        # skip_invalid stores the valid one and reports the others.
        partial = client.post(
            "/v1/events", params={"skip_invalid": "true"}, json=[created(), bad, unknown_task]
        )
        assert partial.status_code == 200
        body = partial.json()
        assert body["appended"] == 1 and {e["index"] for e in body["rejected"]} == {1, 2}
        assert len(audit_rows(client, customer="c1")) == 1


def test_task_actions(store_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "rights.toml"
    policy.write_text('[users]\nu-1 = ["tasks.edit", "tasks.reopen", "tasks.delete"]\n')
    append_to_url(store_url, [created(), task_created("t1"), task_created("t2")])
    with serve_in_thread(store_url, rights=str(policy)) as client:

        def act(task: str, action: str, user: str = "u-1", **kw: Any) -> httpx.Response:
            return client.post(f"/v1/customers/c1/tasks/{task}/{action}", params={"as": user}, **kw)

        done = act("t1", "complete")
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed"
        assert done.json()["actions"] == ["reopen", "delete"]
        # The state forbids: 409, nothing stored.
        assert act("t1", "complete").status_code == 409
        assert (
            act("t1", "edit", json={"changes": [{"field": "title", "new": "x"}]}).status_code == 409
        )
        reopened = act("t1", "reopen")
        assert reopened.status_code == 200 and reopened.json()["status"] == "pending"
        edited = act("t1", "edit", json={"changes": [{"field": "title", "new": "Visit"}]})
        assert edited.status_code == 200 and edited.json()["title"] == "Visit"
        history = audit_rows(client, task="t1")
        assert [r["type"] for r in history] == [
            "task.created",
            "task.completed",
            "task.reopened",
            "task.edited",
        ]
        assert history[-1]["changes"] == [{"field": "title", "old": "Call back", "new": "Visit"}]
        assert history[-1]["actor"]["id"] == "u-1" and history[-1]["source"] == "ledger-api"
        # The rights policy: u-2 may complete (no right needed) but not delete.
        refused = act("t2", "delete", user="u-2")
        assert refused.status_code == 403 and "tasks.delete" in refused.json()["detail"]
        deleted = act("t2", "delete")
        assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
        # Unknown (or deleted) task, unknown customer: 404.
        assert act("t2", "complete").status_code == 404
        assert act("nope", "complete").status_code == 404
        assert (
            client.post("/v1/customers/zz/tasks/t1/complete", params={"as": "u-1"}).status_code
            == 404
        )
        assert act("t1", "archive").status_code == 422
        assert act("t1", "edit").status_code == 400  # an edit needs changes
    # The CLI's `ledger task` is the same service.
    out = cli_json(store_url, "task", "complete", "c1", "t1", "--as", "u-1")
    assert out["task"]["status"] == "completed" and out["stored"] is True


def test_idempotency_key_stores_an_action_once_even_when_concurrent(store_url: str) -> None:
    append_to_url(store_url, [created(), task_created("t1"), task_created("t2")])
    with serve_in_thread(store_url) as client:
        url = "/v1/customers/c1/tasks/t1/complete"
        first = client.post(url, params={"as": "u-1"}, headers={"Idempotency-Key": "k-1"})
        retry = client.post(url, params={"as": "u-1"}, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == retry.status_code == 200
        assert first.json() == retry.json()
        assert [r["type"] for r in audit_rows(client, task="t1")] == [
            "task.created",
            "task.completed",
        ]
        # Two clients complete one task at the same moment: one event is stored.
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def complete() -> None:
            with httpx.Client(base_url=client.base_url, timeout=60) as c:
                barrier.wait()
                statuses.append(
                    c.post("/v1/customers/c1/tasks/t2/complete", params={"as": "u-1"}).status_code
                )

        threads = [threading.Thread(target=complete) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 409]
        assert [r["type"] for r in audit_rows(client, task="t2")] == [
            "task.created",
            "task.completed",
        ]


def test_audit_anchor_projections_health_and_metrics(store_url: str) -> None:
    append_to_url(store_url, [created(), task_created("t1")])
    with serve_in_thread(store_url) as client:
        ndjson_rows = audit_rows(client, customer="c1")
        assert ndjson_rows == [
            json.loads(line)
            for line in cli_text(
                store_url, "audit", "history", "--customer", "c1", "--format", "ndjson"
            ).splitlines()
        ]
        as_json = client.get(
            "/v1/audit/history", params={"customer": "c1"}, headers={"Accept": "application/json"}
        )
        assert as_json.headers["content-type"].startswith("application/json")
        assert as_json.json()["events"] == ndjson_rows
        as_csv = client.get(
            "/v1/audit/history", params={"task": "t1"}, headers={"Accept": "text/csv"}
        )
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert list(csv.reader(io.StringIO(as_csv.text))) == list(
            csv.reader(
                io.StringIO(
                    cli_text(store_url, "audit", "history", "--task", "t1", "--format", "csv")
                )
            )
        )
        assert (
            client.get(
                "/v1/audit/history", params={"customer": "c1"}, headers={"Accept": "image/png"}
            ).status_code
            == 406
        )
        assert client.get("/v1/audit/history").status_code == 400
        anchor = client.get("/v1/audit/anchor").json()
        cli_anchor = cli_json(store_url, "audit", "anchor")
        assert anchor == {"position": cli_anchor["position"], "hash": cli_anchor["hash"]}

        client.get("/v1/customers/c1/tabs/tasks")
        status = client.get("/v1/projections").json()
        assert status["head"] == 2
        assert {p["name"] for p in status["projections"]} >= {"tasks"}
        assert status.keys() == cli_json(store_url, "projections", "status").keys()

        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}

        def metric(text: str, sample_name: str, /, **labels: str) -> float:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == sample_name and all(
                        sample.labels.get(k) == v for k, v in labels.items()
                    ):
                        return float(sample.value)
            return 0.0

        before = client.get("/metrics")
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain")
        appended = metric(before.text, "ledger_events_appended_total")
        assert metric(before.text, "ledger_head_position") == 2
        client.post("/v1/events", json=event("note.added", "c1", {"note_id": "n", "text": "t"}))
        client.post("/v1/events", json=event("note.added", "c1", {"note_id": "n"}))
        after = client.get("/metrics").text
        assert metric(after, "ledger_events_appended_total") == appended + 1
        assert metric(after, "ledger_events_rejected_total", reason="contract") >= 1
        assert metric(after, "ledger_head_position") == 3
        assert metric(after, "ledger_projection_lag_events", name="timeline") >= 1
        assert (
            metric(
                after,
                "ledger_http_requests_total",
                method="POST",
                route="/v1/events",
                status="200",
            )
            >= 1
        )
        assert (
            metric(
                after,
                "ledger_http_request_duration_seconds_count",
                method="GET",
                route="/v1/customers/{customer_id}/tabs/{tab}",
            )
            >= 1
        )


def test_request_ids_and_cors(sqlite_url: str) -> None:
    with serve_in_thread(sqlite_url, cors_origins=["https://crm.example"]) as client:
        mine = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
        assert mine.headers["x-request-id"] == "abc-123"
        fresh = client.get("/healthz").headers["x-request-id"]
        assert fresh and fresh != client.get("/healthz").headers["x-request-id"]
        problem = client.get("/v1/customers/c1/tabs/nope", headers={"X-Request-Id": "r-9"})
        assert problem.json()["request_id"] == "r-9"
        preflight = client.options(
            "/v1/events",
            headers={
                "Origin": "https://crm.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://crm.example"
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    with serve_in_thread(sqlite_url) as client:  # no origins configured: none allowed
        answer = client.get("/healthz", headers={"Origin": "https://crm.example"})
        assert "access-control-allow-origin" not in answer.headers


def test_openapi_served_equals_the_committed_copy(sqlite_url: str) -> None:
    committed = Path(__file__).parents[2] / "schemas" / "openapi.json"
    with serve_in_thread(sqlite_url) as client:
        served = client.get("/openapi.json").json()
    assert served["openapi"].startswith("3.1")
    assert json.loads(committed.read_text()) == served, (
        "schemas/openapi.json is stale: run `ledger schemas export`"
    )


def test_unique_event_ids_for_actions_without_a_key(sqlite_url: str) -> None:
    append_to_url(sqlite_url, [created(), task_created("t1")])
    with serve_in_thread(sqlite_url) as client:
        for action in ("complete", "reopen", "complete"):
            assert (
                client.post(f"/v1/customers/c1/tasks/t1/{action}", params={"as": "u-1"}).status_code
                == 200
            )
        ids = [r["event_id"] for r in audit_rows(client, task="t1")]
        assert len(set(ids)) == 4 and all(uuid.UUID(i) for i in ids)


def test_not_ready_until_migrated_when_auto_migration_is_off(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_AUTO_MIGRATE", "0")
    with serve_in_thread(store_url) as client:
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.headers["content-type"] == "application/problem+json"
        assert client.get("/v1/customers/c1/tabs/timeline").status_code == 503
        assert client.post("/v1/events", json=created()).status_code == 503
        migrated = CliRunner().invoke(ledger, ["--db", store_url, "db", "migrate"])
        assert migrated.exit_code == 0, migrated.output
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.post("/v1/events", json=created()).status_code == 200
        assert client.get("/v1/customers/c1/tabs/timeline").status_code == 200


def test_ids_with_slashes_and_percents_are_addressable(store_url: str) -> None:
    # Contract ids may hold "/" and "%"; sent escaped, they must reach their
    # routes whole, and the unescaped path must not reach them.
    customer, task = "a/b", "t/50%"
    path = f"/v1/customers/{quote(customer, safe='')}"
    append_to_url(
        store_url,
        [created(customer), task_created(task, customer), task_created("t2", customer)],
    )
    with serve_in_thread(store_url) as client:
        tab = client.get(f"{path}/tabs/tasks")
        assert tab.status_code == 200, tab.text
        assert tab.json()["customer_id"] == customer
        assert {t["task_id"] for t in tab.json()["items"]} == {task, "t2"}
        assert client.get("/v1/customers/a/b/tabs/tasks").status_code == 404

        done = client.post(f"{path}/tasks/{quote(task, safe='')}/complete", params={"as": "u-1"})
        assert done.status_code == 200, done.text
        assert done.json()["task_id"] == task and done.json()["status"] == "completed"
        assert [r["type"] for r in audit_rows(client, task=task)] == [
            "task.created",
            "task.completed",
        ]

        # The card page: served, and its own forms address the ids escaped.
        page = client.get(f"/customers/{quote(customer, safe='')}", params={"tab": "tasks"})
        assert page.status_code == 200, page.text
        action = "/customers/a%2Fb/tasks/t2/complete"
        assert f'action="{action}"' in page.text
        assert 'action="/customers/a%2Fb/tasks/t%2F50%25/reopen"' in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        pressed = client.post(action, data={"csrf": csrf.group(1), "tz": "UTC"})
        assert pressed.status_code in (200, 303), pressed.text
        assert [r["type"] for r in audit_rows(client, task="t2")] == [
            "task.created",
            "task.completed",
        ]

        erased = client.post(f"{path}/erase", json={"reason": "art. 17"})
        assert erased.status_code == 200, erased.text
        assert erased.json()["customer_id"] == customer and erased.json()["erased"] is True
