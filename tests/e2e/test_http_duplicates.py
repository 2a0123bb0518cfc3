"""Duplicates over HTTP: `GET /v1/customers/{id}/duplicates` answers what `ledger
customers duplicates ID --format json` does; `POST .../not-duplicates` needs the
scope `merge`, an acting user, and the right `customers.merge`; refusals are
problem+json with a code and a field. On both stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from api.access import load_access, new_key
from tests.cli_runner import ledger_cli
from tests.factories import append_to_url, event

CARDS = {
    "c1": {"name": "Anna", "phone": "+49 30 1234567", "email": "anna@example.com"},
    "c2": {"name": "Anna P", "phone": "030 1234567"},
    "c3": {"name": "A. P.", "email": "ANNA@example.com"},
}


def created() -> list[dict[str, Any]]:
    return [event("customer.created", c, {"card": card}) for c, card in CARDS.items()]


def ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [c["customer_id"] for c in answer.json()["items"]]


def test_the_api_answers_as_the_cli_and_marks_hide_a_pair(store_url: str) -> None:
    from tests.http_support import serve_in_thread

    append_to_url(store_url, created())
    with serve_in_thread(store_url) as client:
        answer = client.get("/v1/customers/c1/duplicates")
        cli = ledger_cli("customers", "duplicates", "c1", "--format", "json", db=store_url)
        assert answer.json() == json.loads(cli.stdout)
        assert ids(answer) == ["c2", "c3"]
        reasons = answer.json()["items"][0]["reasons"]
        assert reasons == [{"field": "phone", "value": "+49 30 \u2022\u2022\u2022\u2022 67"}]
        body = {"customer_id": "c2", "reason": "two people"}
        no_user = client.post("/v1/customers/c1/not-duplicates", json=body)
        assert no_user.status_code == 400, no_user.text
        done = client.post("/v1/customers/c1/not-duplicates", json=body, params={"as": "u-1"})
        assert done.status_code == 200, done.text
        assert done.json() == {
            "customer_id": "c1",
            "other_customer_id": "c2",
            "marked": True,
            "recorded_on": ["c1", "c2"],
        }
        assert ids(client.get("/v1/customers/c1/duplicates")) == ["c3"]
        again = client.post("/v1/customers/c1/not-duplicates", json=body, params={"as": "u-1"})
        assert again.status_code == 409
        assert again.json()["code"] == "mark_exists"
        assert again.json()["field"] == "data.other_customer_id"
        itself = client.post(
            "/v1/customers/c1/not-duplicates",
            json={"customer_id": "c1", "reason": "x"},
            params={"as": "u-1"},
        )
        assert itself.status_code == 422 and itself.json()["code"] == "same_customer"
        back = client.post(
            "/v1/customers/c2/not-duplicates",
            json={"customer_id": "c1", "reason": "was wrong", "withdraw": True},
            params={"as": "u-1"},
        )
        assert back.status_code == 200 and back.json()["marked"] is False
        assert ids(client.get("/v1/customers/c1/duplicates")) == ["c2", "c3"]
        missing = client.get("/v1/customers/nobody/duplicates")
        assert missing.status_code == 404 and missing.json()["code"] == "customer_missing"
        history = client.get("/v1/audit/history", params={"customer": "c2"})
        assert history.status_code == 200, history.text
        assert history.text.count('"customer.not_duplicate"') == 2  # the mark, its withdrawal


def test_marks_need_the_scope_merge_and_the_right(store_url: str, tmp_path: Path) -> None:
    from tests.http_support import serve_in_thread

    append_to_url(store_url, created())
    path = tmp_path / "access.toml"
    tokens = {
        name: new_key(path, name, scopes, user).token
        for name, scopes, user in [
            ("reader", ["read", "tasks"], "u-boss"),
            ("manager", ["read", "merge"], "u-boss"),
            ("agent", ["read", "merge"], "u-agent"),
            ("backend", ["merge", "act-as"], None),
        ]
    }
    rights = tmp_path / "rights.toml"
    rights.write_text('[roles]\nmanager = ["customers.merge"]\n[users]\nu-boss = ["manager"]\n')

    def post(key: str, params: dict[str, str] | None = None) -> httpx.Response:
        return client.post(
            "/v1/customers/c1/not-duplicates",
            json={"customer_id": "c2", "reason": "two people"},
            params=params or {},
            headers={"Authorization": f"Bearer {tokens[key]}"},
        )

    with serve_in_thread(store_url, access=load_access(path), rights=str(rights)) as client:
        no_scope = post("reader")
        assert no_scope.status_code == 403 and "merge" in no_scope.json()["detail"]
        no_right = post("agent")
        assert no_right.status_code == 403, no_right.text
        assert no_right.json()["code"] == "right_missing"
        assert no_right.json()["field"] == "actor.id"
        no_user = post("backend")
        assert no_user.status_code == 403
        on_behalf = post("backend", {"as": "u-agent"})
        assert on_behalf.status_code == 403 and on_behalf.json()["code"] == "right_missing"
        ok = post("manager")
        assert ok.status_code == 200, ok.text
        reader = {"Authorization": f"Bearer {tokens['manager']}"}
        left = client.get("/v1/customers/c1/duplicates", headers=reader)
        assert ids(left) == ["c3"]
