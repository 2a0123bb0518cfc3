"""Merging over HTTP: `POST /v1/customers/{id}/merge` previews and merges as the
service does (the answer is `MergeOutcome.as_json()`), an absorbed customer's
views answer 308 to the priority customer's, and `POST .../unmerge` undoes it;
refusals are problem+json with their codes; scope `merge` and the right
`customers.merge` are needed. On both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from api.access import load_access, new_key
from tests.factories import append_to_url, event

P = "p/1"  # the priority customer; its id needs escaping in a path
A = "a-2"  # shares no phone or e-mail with P
S = "s-3"  # shares P's e-mail (another case)
SHOP = {"kind": "system", "id": "shop"}
MERGE_TYPES = {"customer.merged", "customer.absorbed", "customer.unmerged", "customer.released"}


def at(minute: int) -> str:
    return f"2026-10-01T10:{minute:02d}:00Z"


def stored() -> list[dict[str, Any]]:
    return [
        event(
            "customer.created",
            P,
            {"card": {"name": "Anna Petrova", "email": "anna@example.com", "city": "Berlin"}},
            occurred_at=at(0),
        ),
        event("note.added", P, {"note_id": "n-p", "text": "P's note"}, occurred_at=at(1)),
        event(
            "customer.created",
            A,
            {"card": {"name": "Ben Okafor", "email": "ben@example.com", "city": "Lagos"}},
            occurred_at=at(2),
        ),
        event("note.added", A, {"note_id": "n-a", "text": "A's note"}, occurred_at=at(3)),
        event(
            "order.created",
            A,
            {"order_id": "o/1", "number": "A-1", "status": "new", "total": "5.00"},
            occurred_at=at(4),
            actor=SHOP,
        ),
        event("chat.started", A, {"dialog_id": "d1", "channel": "telegram"}, occurred_at=at(5)),
        event(
            "customer.created",
            S,
            {"card": {"name": "A. Petrova", "email": "ANNA@example.com"}},
            occurred_at=at(6),
        ),
    ]


def path(customer_id: str, rest: str = "") -> str:
    return f"/v1/customers/{quote(customer_id, safe='')}{rest}"


def notes(client: httpx.Client, customer_id: str) -> list[str]:
    answer = client.get(path(customer_id, "/tabs/timeline"), params={"kind": "notes"})
    assert answer.status_code == 200, answer.text
    return sorted(i["data"]["note_id"] for i in answer.json()["items"])


def merge_events(client: httpx.Client, customer_id: str) -> list[str]:
    history = client.get("/v1/audit/history", params={"customer": customer_id})
    assert history.status_code == 200, history.text
    return [t for t in MERGE_TYPES if f'"{t}"' in history.text]


def problem(answer: httpx.Response, status: int, code: str | None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body.get("code") == code, body
    return body


def test_a_preview_stores_nothing_and_strangers_need_a_confirmation(store_url: str) -> None:
    from tests.http_support import serve_in_thread

    append_to_url(store_url, stored())
    body: dict[str, Any] = {"absorb": [A], "reason": "one person", "keep": {"name": A}}
    with serve_in_thread(store_url) as client:
        preview = client.post(
            path(P, "/merge"), json={**body, "dry_run": True}, params={"as": "u-1"}
        )
        assert preview.status_code == 200, preview.text
        answer = preview.json()
        assert answer["applied"] is False and answer["needs_confirmation"] is True
        assert A in answer["confirmation_reason"] and P in answer["confirmation_reason"]
        assert answer["customer_id"] == P and answer["absorbed"] == [A]
        # `keep` chose A's name; the other differing fields keep P's values.
        assert answer["card"] == {
            "name": "Ben Okafor",
            "email": "anna@example.com",
            "city": "Berlin",
        }
        assert answer["moved"]["timeline"] == 4  # A's creation, note, order, chat
        assert answer["moved"]["orders"] == 1 and answer["moved"]["chats"] == 1
        assert {c["field"]: c["values"] for c in answer["conflicts"]} == {
            "city": {P: "Berlin", A: "Lagos"},
            "email": {P: "anna@example.com", A: "ben@example.com"},
            "name": {P: "Anna Petrova", A: "Ben Okafor"},
        }
        # A preview needs no reason, and stores nothing.
        bare = client.post(
            path(P, "/merge"), json={"absorb": [A], "dry_run": True}, params={"as": "u-1"}
        )
        assert bare.status_code == 200 and bare.json()["applied"] is False
        assert merge_events(client, P) == [] and merge_events(client, A) == []
        assert client.get(path(A, "/tabs/timeline")).status_code == 200

        unconfirmed = client.post(path(P, "/merge"), json=body, params={"as": "u-1"})
        refusal = problem(unconfirmed, 409, "confirmation_needed")
        assert "share no phone number or e-mail address" in refusal["detail"]
        no_reason = client.post(
            path(P, "/merge"),
            json={"absorb": [A], "reason": "  ", "confirm": True},
            params={"as": "u-1"},
        )
        problem(no_reason, 400, "reason_missing")
        assert merge_events(client, P) == [] and notes(client, P) == ["n-p"]

        done = client.post(path(P, "/merge"), json={**body, "confirm": True}, params={"as": "u-1"})
        assert done.status_code == 200, done.text
        assert done.json() == {**answer, "applied": True}
        assert sorted(merge_events(client, P)) == ["customer.merged"]
        assert merge_events(client, A) == ["customer.absorbed"]
        # The card keeps A's name, as chosen: the reader finds P under it.
        found = client.get("/v1/customers", params={"q": P})
        assert found.json()["items"] == [{"customer_id": P, "name": "Ben Okafor", "matched": "id"}]


def test_contacts_in_common_need_no_confirmation(store_url: str) -> None:
    from tests.http_support import serve_in_thread

    append_to_url(store_url, stored())
    with serve_in_thread(store_url) as client:
        done = client.post(
            path(P, "/merge"), json={"absorb": [S], "reason": "same e-mail"}, params={"as": "u-1"}
        )
        assert done.status_code == 200, done.text
        assert done.json()["applied"] is True and done.json()["needs_confirmation"] is False
        assert done.json()["confirmation_reason"] is None


def test_an_absorbed_customers_views_redirect_to_the_priority_until_the_undo(
    store_url: str,
) -> None:
    from tests.http_support import serve_in_thread

    append_to_url(store_url, stored())
    merge = {"absorb": [A], "reason": "one person", "confirm": True}
    with serve_in_thread(store_url) as client:
        done = client.post(path(P, "/merge"), json=merge, params={"as": "u-1"})
        assert done.status_code == 200, done.text

        moved = client.get(path(A, "/tabs/timeline"), params=[("kind", "notes"), ("limit", "5")])
        assert moved.status_code == 308, moved.text
        location = moved.headers["location"]
        assert location == "/v1/customers/p%2F1/tabs/timeline?kind=notes&limit=5"
        followed = client.get(location)
        assert followed.status_code == 200, followed.text
        assert followed.json()["customer_id"] == P
        assert sorted(i["data"]["note_id"] for i in followed.json()["items"]) == ["n-a", "n-p"]
        # httpx follows it when asked to, as a browser or a generated client does.
        chained = client.get(path(A, "/tabs/timeline"), follow_redirects=True)
        assert chained.status_code == 200 and chained.json()["customer_id"] == P
        assert client.get(path(A, "/tabs/orders"), follow_redirects=True).json()["customer_id"] == P

        for rest in ("/duplicates", "/orders/o%2F1", "/chats/d1?limit=1"):
            view = client.get(path(A, rest))
            assert view.status_code == 308, (rest, view.text)
            assert view.headers["location"] == path(P, rest)
            target = client.get(view.headers["location"])
            assert target.status_code == 200, (rest, target.text)
            assert target.json()["customer_id"] == P
        # Unknown customers are 404 as before; the priority's own views answer.
        problem(client.get(path("nobody", "/tabs/timeline")), 404, "customer_missing")
        assert client.get(path(P, "/tabs/timeline")).status_code == 200

        # An event sent under the absorbed id is accepted, keeps its id, shows on P.
        late = client.post(
            path(A, "/notes"), json={"text": "after the merge"}, params={"as": "u-1"}
        )
        assert late.status_code == 201, late.text
        history = client.get("/v1/audit/history", params={"customer": A})
        assert history.text.count('"note.added"') == 2, history.text
        assert len(notes(client, P)) == 3

        undo = client.post(
            path(P, "/unmerge"),
            json={"customer_id": A, "reason": "two people"},
            params={"as": "u-1"},
        )
        assert undo.status_code == 200, undo.text
        assert undo.json() == {"customer_id": P, "released": A, "applied": True}
        own = client.get(path(A, "/tabs/timeline"), params={"kind": "notes"})
        assert own.status_code == 200, own.text
        assert own.json()["customer_id"] == A
        assert len(own.json()["items"]) == 2 and "n-p" not in own.text  # n-a and the late note
        assert notes(client, P) == ["n-p"]
        assert client.get(path(A, "/orders/o%2F1")).status_code == 200
        assert client.get(path(P, "/orders/o%2F1")).status_code == 404

        again = client.post(
            path(P, "/unmerge"),
            json={"customer_id": A, "reason": "two people"},
            params={"as": "u-1"},
        )
        problem(again, 409, "not_merged")
        blank = client.post(
            path(P, "/unmerge"), json={"customer_id": A, "reason": " "}, params={"as": "u-1"}
        )
        problem(blank, 400, "reason_missing")
        unknown = client.post(
            path(P, "/unmerge"), json={"customer_id": "nobody", "reason": "x"}, params={"as": "u-1"}
        )
        problem(unknown, 404, "customer_missing")


def test_merges_the_rules_refuse_store_nothing(store_url: str) -> None:
    from tests.http_support import serve_in_thread

    append_to_url(store_url, stored())

    def post(priority: str, body: dict[str, Any]) -> httpx.Response:
        full = {"reason": "one person", "confirm": True, **body}
        return client.post(path(priority, "/merge"), json=full, params={"as": "u-1"})

    with serve_in_thread(store_url) as client:
        problem(post(P, {"absorb": [P]}), 409, "same_customer")
        problem(post(P, {"absorb": ["nobody"]}), 404, "customer_missing")
        problem(post("nobody", {"absorb": [A]}), 404, "customer_missing")
        problem(post(P, {"absorb": [A, A]}), 409, "listed_twice")
        keep = problem(post(P, {"absorb": [A], "keep": {"shoe_size": A}}), 400, "keep_unknown")
        assert "shoe_size" in keep["detail"]
        problem(post(P, {"absorb": [A], "keep": {"name": S}}), 400, "keep_outside")
        no_user = client.post(path(P, "/merge"), json={"absorb": [A], "reason": "x"})
        problem(no_user, 400, None)
        assert merge_events(client, P) == [] and merge_events(client, A) == []

        assert post(P, {"absorb": [A]}).status_code == 200
        into_absorbed = problem(post(A, {"absorb": [S]}), 409, "customer_absorbed")
        assert repr(P) in into_absorbed["detail"]
        problem(post(S, {"absorb": [A]}), 409, "already_absorbed")
        problem(post(S, {"absorb": [P]}), 409, "holds_merged")
        assert merge_events(client, S) == []


def test_merging_needs_the_scope_merge_and_the_right(store_url: str, tmp_path: Path) -> None:
    from tests.http_support import serve_in_thread

    append_to_url(store_url, stored())
    access = tmp_path / "access.toml"
    tokens = {
        name: new_key(access, name, scopes, user).token
        for name, scopes, user in [
            ("reader", ["read", "tasks"], "u-boss"),
            ("manager", ["read", "merge"], "u-boss"),
            ("agent", ["read", "merge"], "u-agent"),
            ("backend", ["merge", "act-as"], None),
        ]
    }
    rights = tmp_path / "rights.toml"
    rights.write_text('[roles]\nmanager = ["customers.merge"]\n[users]\nu-boss = ["manager"]\n')
    body = {"absorb": [S], "reason": "same e-mail"}

    def post(
        key: str, op: str = "/merge", params: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return client.post(
            path(P, op),
            json=kw.get("json", body),
            params=params or {},
            headers={"Authorization": f"Bearer {tokens[key]}"},
        )

    with serve_in_thread(store_url, access=load_access(access), rights=str(rights)) as client:
        no_scope = post("reader")
        assert no_scope.status_code == 403 and "merge" in no_scope.json()["detail"]
        problem(post("agent"), 403, "right_missing")
        problem(post("agent", params={}, json={**body, "dry_run": True}), 403, "right_missing")
        assert post("backend").status_code == 403  # a key of no user, no `as`
        problem(post("backend", params={"as": "u-agent"}), 403, "right_missing")
        reader = {"Authorization": f"Bearer {tokens['manager']}"}
        # Nothing was stored by the refusals: S is still its own card.
        assert client.get(path(S, "/tabs/timeline"), headers=reader).status_code == 200
        done = post("backend", params={"as": "u-boss"})
        assert done.status_code == 200 and done.json()["applied"] is True
        moved = client.get(path(S, "/tabs/timeline"), headers=reader)
        assert moved.status_code == 308
        undo = {"customer_id": S, "reason": "two people"}
        problem(post("agent", "/unmerge", json=undo), 403, "right_missing")
        assert post("reader", "/unmerge", json=undo).status_code == 403
        undone = post("manager", "/unmerge", json=undo)
        assert undone.status_code == 200, undone.text
        assert client.get(path(S, "/tabs/timeline"), headers=reader).status_code == 200
