"""An order's history, the dialogue behind a chat and the card's header in a
real Chromium against `ledger serve` on the demo data (tests/page_support.py)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from ledger.summaries import value_text
from tests.page_support import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    Server,
    Watched,
    ledger_server,
    load_demo,
    no_horizontal_overflow,
    tab_json,
)

CUSTOMER = "cust-1001"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("subjects")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    load_demo(db)
    with ledger_server(db, tmp) as running:
        yield running


@pytest.fixture(params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def watched(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Watched]:
    context = browser.new_context(viewport=request.param)
    context.set_default_timeout(10_000)
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def api(server: Server, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(server.url(path), timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def fits(watched: Watched, what: str) -> None:
    scroll, client = no_horizontal_overflow(watched.page)
    assert scroll <= client, f"{what}: {scroll}px wide in a {client}px window"


def words(code: str) -> str:
    return code.replace("_", " ").capitalize()


def test_an_order_row_opens_its_change_history(server: Server, watched: Watched) -> None:
    page = watched.page
    orders = tab_json(server.db, CUSTOMER, "orders")["items"]
    page.goto(server.url(f"/customers/{CUSTOMER}?tab=orders"))
    # One row per order, and the tab counts orders.
    expect(page.locator("nav.tabs a[data-tab=orders] .count")).to_have_text(str(len(orders)))
    expect(page.locator("table.rows tbody tr")).to_have_count(len(orders))
    fits(watched, "orders tab")
    order = orders[0]
    row = page.locator(f"tr[data-order-id='{order['order_id']}']")
    expect(row.locator("td[data-label=Total]")).to_have_text(
        f"{order['total']} {order['currency']}"
    )
    expect(row.locator("td[data-label=Status]")).to_have_text(words(order["status"]))
    row.locator("a.order-link").click()
    page.wait_for_url(f"**/customers/{CUSTOMER}/orders/{order['order_id']}")
    history = api(server, f"/v1/customers/{CUSTOMER}/orders/{order['order_id']}")
    expect(page.locator("h1")).to_have_text(f"Order {order['number']}")
    expect(page.locator("#order-status")).to_have_text(words(order["status"]))
    expect(page.locator("#order-total")).to_have_text(f"{order['total']} {order['currency']}")
    rows = page.locator("#changes tbody tr")
    expect(rows).to_have_count(len(history["items"]))
    newest = history["items"][0]
    first = rows.first
    expect(first.locator("td[data-label=Field]")).to_have_text(words(newest["field"]))
    # Values as every door words them: a status in words, "—" for none.
    expect(first.locator("td[data-label=Change]")).to_have_text(
        f"{value_text(newest['field'], newest['old'])} → "
        f"{value_text(newest['field'], newest['new'])}"
    )
    actor = newest["actor"]
    expect(first.locator("td[data-label=By]")).to_have_text(
        actor["name"] or f"{actor['kind']}:{actor['id']}"
    )
    fits(watched, "order history")
    if page.viewport_size == DESKTOP:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "order-history.png"))
    page.click("#back")
    page.wait_for_url(f"**/customers/{CUSTOMER}?tab=orders")
    assert watched.errors == [] and watched.dialogs == []


def test_a_chats_start_date_opens_the_dialogue(server: Server, watched: Watched) -> None:
    page = watched.page
    chat = tab_json(server.db, CUSTOMER, "chats")["items"][0]
    page.goto(server.url(f"/customers/{CUSTOMER}?tab=chats"))
    page.locator(f"tr[data-dialog-id='{chat['dialog_id']}'] a.dialog-link").click()
    page.wait_for_url(f"**/customers/{CUSTOMER}/chats/{chat['dialog_id']}")
    talk = api(server, f"/v1/customers/{CUSTOMER}/chats/{chat['dialog_id']}")
    expect(page.locator("#dialogue-status")).to_have_text(words(talk["status"]))
    assert "_" not in page.locator("#dialogue-status").inner_text()
    expect(page.locator("#dialogue-count")).to_have_text(str(talk["message_count"]))
    messages = page.locator("#messages li.message")
    expect(messages).to_have_count(len(talk["items"]))
    assert len(talk["items"]) == talk["message_count"] > 0
    for shown, message in zip(messages.all(), talk["items"], strict=True):
        expect(shown).to_have_attribute("data-message-id", message["message_id"])
        expect(shown.locator(".message-text")).to_have_text(message["text"])
        expect(shown).to_have_class(f"message {message['direction']}")
    # The producer's link is there, but as the secondary way out.
    link = page.locator(".secondary a#messenger-link")
    expect(link).to_have_attribute("href", chat["url"])
    expect(link).to_have_attribute("target", "_blank")
    assert page.locator("main a[href^='https://crm.example.com']").count() == 1
    fits(watched, "dialogue")
    if page.viewport_size == DESKTOP:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dialogue.png"))
    assert watched.errors == [] and watched.dialogs == []


def test_the_header_shows_contact_segments_and_since(server: Server, watched: Watched) -> None:
    page = watched.page
    card = tab_json(server.db, CUSTOMER, "card", "--limit", "1000")["items"]
    segments = tab_json(server.db, CUSTOMER, "segments", "--limit", "1000")
    page.goto(server.url(f"/customers/{CUSTOMER}"))

    def current(field: str) -> str:
        return str(next(c["new"] for c in card if c["field"] == field))

    expect(page.locator("#customer-phone")).to_have_text(current("phone"))
    expect(page.locator("#customer-email")).to_have_text(current("email"))
    names = {
        i["segment_id"]: i["segment_name"] or i["segment_id"] for i in reversed(segments["items"])
    }
    chips = page.locator("#customer-segments .chip").all_inner_texts()
    assert chips == [names[s] for s in segments["memberships"]]
    assert not any(c.startswith("seg-") for c in chips)
    oldest = tab_json(server.db, CUSTOMER, "timeline", "--limit", "1000")["items"][-1]
    expect(page.locator("#customer-since")).to_have_text(oldest["occurred_at"][:10])
    fits(watched, "card header")
