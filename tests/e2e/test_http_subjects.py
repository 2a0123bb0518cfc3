"""`GET /v1/customers/{id}/orders/{order_id}` and `.../chats/{dialog_id}` and
their pages, on a live server on both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from tests.factories import append_ok, event
from tests.http_support import make_keys, page_sign_in, serve_in_thread

SHOP = {"kind": "system", "id": "shop"}
BRIDGE = {"kind": "integration", "id": "wa", "name": "Anna (WhatsApp)"}


def _events() -> list[dict[str, Any]]:
    def e(kind: str, data: dict[str, Any], minute: int, actor: Any = None) -> dict[str, Any]:
        at = f"2026-10-01T10:{minute:02d}:00Z"
        return event(kind, "c1", data, occurred_at=at, actor=actor)

    out = [
        e("customer.created", {"card": {"name": "Anna"}}, 0),
        e(
            "order.created",
            {
                "order_id": "o/1",
                "number": "A-1",
                "status": "new",
                "total": "5.00",
                "currency": "EUR",
            },
            1,
            SHOP,
        ),
        e(
            "order.changed",
            {"order_id": "o/1", "changes": [{"field": "status", "old": "new", "new": "paid"}]},
            2,
        ),
        e(
            "chat.started",
            {"dialog_id": "d1", "channel": "telegram", "url": "javascript:alert(1)"},
            3,
        ),
    ]
    for k in range(7):
        inbound = k % 2 == 0
        data = {
            "dialog_id": "d1",
            "message_id": f"m{k}",
            "direction": "inbound" if inbound else "outbound",
            "text": f"<b>hi {k}</b>",
        }
        out.append(e("chat.message", data, 4 + k, BRIDGE if inbound else None))
    return out


@pytest.fixture
def url(store_url: str) -> str:
    app = LedgerApplication(parse_database_url(store_url), create_tables=True)
    try:
        append_ok(app, _events())
    finally:
        app.close()
    return store_url


def test_order_and_dialogue_over_http(url: str, tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    with serve_in_thread(url, access=keys.access()) as client:
        reader = keys.auth("reader")
        order = client.get("/v1/customers/c1/orders/o%2F1", headers=reader)
        assert order.status_code == 200, order.text
        body = order.json()
        assert (body["order_id"], body["status"], body["total"]) == ("o/1", "paid", "5.00")
        newest = body["items"][0]
        assert (newest["field"], newest["old"], newest["new"]) == ("status", "new", "paid")
        assert (
            client.get("/v1/customers/c1/orders/o%2F1", headers=keys.auth("ingest")).status_code
            == 403
        )
        assert client.get("/v1/customers/c1/orders/o%2F1").status_code == 401
        missing = client.get("/v1/customers/c1/orders/nope", headers=reader)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")

        path = "/v1/customers/c1/chats/d1"
        first = client.get(path, params={"limit": "3"}, headers=reader).json()
        assert set(first) >= {"channel", "status", "started_at", "message_count", "url", "items"}
        assert first["message_count"] == 7 and first["status"] == "new"
        assert [m["message_id"] for m in first["items"]] == ["m0", "m1", "m2"]
        m0 = first["items"][0]
        assert m0 == {
            "message_id": "m0",
            "direction": "inbound",
            "author": {"kind": "integration", "id": "wa", "name": "Anna (WhatsApp)"},
            "sent_at": "2026-10-01T10:04:00Z",
            "text": "<b>hi 0</b>",
        }
        seen = list(first["items"])
        cursor = first["next_cursor"]
        while cursor:
            page = client.get(path, params={"limit": "3", "cursor": cursor}, headers=reader).json()
            seen += page["items"]
            cursor = page["next_cursor"]
        assert [m["message_id"] for m in seen] == [f"m{k}" for k in range(7)]
        bad = client.get(path, params={"cursor": first["next_cursor"]}, headers=reader)
        assert bad.status_code == 200  # the same dialogue's cursor
        wrong = client.get(
            "/v1/customers/c1/orders/o%2F1", params={"cursor": first["next_cursor"]}, headers=reader
        )
        assert wrong.status_code == 400
        assert client.get("/v1/customers/c1/chats/nope", headers=reader).status_code == 404

        erased = client.post(
            "/v1/customers/c1/erase", json={"reason": "asked"}, headers=keys.auth("dpo")
        )
        assert erased.status_code == 200, erased.text
        after = client.get(path, headers=reader).json()
        assert {m["text"] for m in after["items"]} == {"[erased]"}


def test_the_pages_show_the_order_and_the_dialogue(url: str, tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    with serve_in_thread(url, access=keys.access()) as client:
        page_sign_in(client, keys.tokens["reader"])
        order = client.get("/customers/c1/orders/o%2F1")
        assert order.status_code == 200
        assert "Order A-1" in order.text and "Paid" in order.text
        card = client.get("/customers/c1", params={"tab": "orders"})
        assert 'href="/customers/c1/orders/o%2F1"' in card.text
        talk = client.get("/customers/c1/chats/d1")
        assert talk.status_code == 200
        assert "&lt;b&gt;hi 0&lt;/b&gt;" in talk.text and "<b>hi" not in talk.text
        assert "javascript:" not in talk.text  # an unsafe messenger url is never a link
        chats = client.get("/customers/c1", params={"tab": "chats"})
        assert 'href="/customers/c1/chats/d1"' in chats.text
        assert client.get("/customers/c1/orders/nope").status_code == 404
        assert client.get("/customers/c1/chats/d1", params={"cursor": "junk"}).status_code == 400
