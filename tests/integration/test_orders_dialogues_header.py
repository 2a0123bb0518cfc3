"""Orders as orders, the dialogue behind a chat and the card's header, read
through the service layer on both stores."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.rights import ALLOW_ALL
from projections.schema import ensure_schema
from services.customers import erase_customer
from services.errors import Category, ServiceError
from services.subjects import dialogue, order_history
from services.tabs import card_header, tab_request, tab_rows
from tests.factories import append_ok, event

MARIA = {"kind": "user", "id": "u-1", "name": "Maria"}
ANNA = {"kind": "integration", "id": "whatsapp", "name": "Anna (WhatsApp)"}
SHOP = {"kind": "system", "id": "shop"}


def _e(kind: str, data: dict[str, Any], hour: int, actor: dict[str, Any] = MARIA) -> Any:
    return event(kind, "c1", data, occurred_at=f"2026-10-01T{hour:02d}:00:00Z", actor=actor)


def _order(order_id: str, number: str, total: str, hour: int) -> Any:
    data = {"order_id": order_id, "number": number, "status": "new", "total": total}
    return _e("order.created", {**data, "currency": "EUR"}, hour, SHOP)


def _change(order_id: str, hour: int, *changes: tuple[str, Any, Any]) -> Any:
    listed = [{"field": f, "old": o, "new": n} for f, o, n in changes]
    return _e("order.changed", {"order_id": order_id, "changes": listed}, hour)


def _message(k: int, hour: int) -> Any:
    inbound = k % 2 == 0
    return _e(
        "chat.message",
        {
            "dialog_id": "d1",
            "message_id": f"m{k}",
            "direction": "inbound" if inbound else "outbound",
            "text": f"message {k}",
        },
        hour,
        ANNA if inbound else MARIA,
    )


STORY = [
    _e(
        "customer.created",
        {"card": {"name": "Anna Petrova", "phone": "+49 30 1234567", "email": "anna@x.de"}},
        1,
    ),
    _e("segment.joined", {"segment_id": "seg-vip", "segment_name": "VIP"}, 2, SHOP),
    _e("segment.joined", {"segment_id": "seg-news", "segment_name": "Newsletter"}, 2, SHOP),
    _e("segment.left", {"segment_id": "seg-news", "segment_name": "Newsletter"}, 3, SHOP),
    _order("o1", "A-1", "10.00", 4),
    _change("o1", 5, ("status", "new", "paid")),
    _change("o1", 6, ("status", "paid", "shipped"), ("total", "10.00", "9.50")),
    _order("o2", "A-2", "20.00", 7),
    _order("o3", "A-3", "30.00", 8),
    _change("o3", 9, ("delivery_address", None, "Hauptstr. 1")),
    _e(
        "chat.started",
        {"dialog_id": "d1", "channel": "whatsapp", "url": "https://wa.example/d1"},
        10,
    ),
    *[_message(k, 11 + k) for k in range(5)],
    _e("chat.status_changed", {"dialog_id": "d1", "status": "in_progress"}, 11),
    _e("email.sent", {"message_id": "e1", "subject": "Hello"}, 20, SHOP),
]


@pytest.fixture
def url(store_url: str) -> str:
    app = LedgerApplication(parse_database_url(store_url), create_tables=True)
    try:
        append_ok(app, STORY)
        append_ok(app, [event("customer.created", "c2", {"card": {"name": "Bob"}})])
    finally:
        app.close()
    with Connection(parse_database_url(store_url)) as conn:
        ensure_schema(conn)
    return store_url


def _conn(url: str) -> Connection:
    return Connection(parse_database_url(url))


def test_the_orders_tab_lists_each_order_once_as_it_is_now(url: str) -> None:
    with _conn(url) as conn:
        items = tab_rows(conn, tab_request("c1", "orders"))["items"]
        header = card_header(conn, "c1")
    assert [(o["number"], o["status"], o["total"], o["currency"]) for o in items] == [
        ("A-3", "new", "30.00", "EUR"),
        ("A-2", "new", "20.00", "EUR"),
        ("A-1", "shipped", "9.50", "EUR"),
    ]
    first = items[2]
    assert first["created_at"] == "2026-10-01T04:00:00Z"
    assert (first["changed_at"], first["changed_by"], first["change_count"]) == (
        "2026-10-01T06:00:00Z",
        MARIA,
        2,
    )
    assert items[1]["changed_at"] == items[1]["created_at"]  # never changed
    assert header.counts["orders"] == 3  # orders, not field changes


def test_an_order_opens_its_own_change_history(url: str) -> None:
    with _conn(url) as conn:
        whole = order_history(conn, "c1", "o1")
        first = order_history(conn, "c1", "o1", limit=2)
        assert first.next_cursor is not None
        rest = order_history(conn, "c1", "o1", cursor=first.next_cursor)
        # A cursor of one order is refused for another.
        with pytest.raises(ServiceError) as other:
            order_history(conn, "c1", "o2", cursor=first.next_cursor)
        with pytest.raises(ServiceError) as missing:
            order_history(conn, "c1", "o9")
        with pytest.raises(ServiceError) as foreign:
            order_history(conn, "c2", "o1")  # not this customer's order
    assert (whole.number, whole.status, whole.total) == ("A-1", "shipped", "9.50")
    assert [(c.field, c.old, c.new, c.occurred_at) for c in whole.items] == [
        ("status", "paid", "shipped", "2026-10-01T06:00:00Z"),
        ("total", "10.00", "9.50", "2026-10-01T06:00:00Z"),
        ("status", "new", "paid", "2026-10-01T05:00:00Z"),
        ("number", None, "A-1", "2026-10-01T04:00:00Z"),
        ("status", None, "new", "2026-10-01T04:00:00Z"),
        ("total", None, "10.00", "2026-10-01T04:00:00Z"),
        ("currency", None, "EUR", "2026-10-01T04:00:00Z"),
    ]
    assert whole.items[0].actor.model_dump() == MARIA
    assert whole.next_cursor is None
    assert first.items + rest.items == whole.items
    assert other.value.category == Category.USAGE
    assert missing.value.category == foreign.value.category == Category.NOT_FOUND


def test_a_dialogue_pages_its_messages_in_order(url: str) -> None:
    with _conn(url) as conn:
        whole = dialogue(conn, "c1", "d1")
        pages, cursor = [], None
        while True:
            page = dialogue(conn, "c1", "d1", limit=2, cursor=cursor)
            pages.append(page)
            cursor = page.next_cursor
            if cursor is None:
                break
        with pytest.raises(ServiceError) as missing:
            dialogue(conn, "c2", "d1")
    assert (whole.channel, whole.status, whole.message_count) == ("whatsapp", "in_progress", 5)
    assert (whole.started_at, whole.url) == ("2026-10-01T10:00:00Z", "https://wa.example/d1")
    assert [m.message_id for m in whole.items] == ["m0", "m1", "m2", "m3", "m4"]
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [m for p in pages for m in p.items] == whole.items
    m0, m1 = whole.items[:2]
    assert (m0.direction, m0.author.model_dump(), m0.text) == ("inbound", ANNA, "message 0")
    assert (m1.direction, m1.author.name, m1.sent_at) == (
        "outbound",
        "Maria",
        "2026-10-01T12:00:00Z",
    )
    assert missing.value.category == Category.NOT_FOUND


def test_the_header_names_contact_segments_and_since(url: str) -> None:
    with _conn(url) as conn:
        header = card_header(conn, "c1")
    assert header.name == "Anna Petrova"
    assert (header.phone, header.email) == ("+49 30 1234567", "anna@x.de")
    assert header.segments == ("VIP",)  # by name; the segment left is gone
    assert header.since == "2026-10-01T01:00:00Z"
    assert header.last_email is not None and header.last_email.opened is False


def test_erased_texts_and_personal_order_fields_read_as_erased(url: str) -> None:
    with _conn(url) as conn:
        before = order_history(conn, "c1", "o3")
    assert before.items[0].new == "Hauptstr. 1"  # personal (the default list), sealed at rest
    app = LedgerApplication(parse_database_url(url))
    try:
        erase_customer(app, ALLOW_ALL, "c1", "asked", "dpo")
    finally:
        app.close()
    with _conn(url) as conn:
        talk = dialogue(conn, "c1", "d1")
        after = order_history(conn, "c1", "o3")
        header = card_header(conn, "c1")
        stored = conn.fetchall("SELECT text FROM rm_chat_messages")
    assert {m.text for m in talk.items} == {"[erased]"}
    assert talk.message_count == 5  # the dialogue itself stays
    assert after.items[0].new == "[erased]"
    assert (after.number, after.total) == ("A-3", "30.00")  # not personal
    assert header.phone == header.email == "[erased]"
    assert all("message" not in str(row[0]) for row in stored)  # never plaintext at rest
