"""Finding duplicates on the card page: the "Possible duplicates (N)" notice, the
list with masked reasons and links to the candidates' cards, and a "Not a
duplicate" mark that takes a candidate off the list (post/redirect/get), in a
real Chromium against a real `ledger serve` holding the demo data and two
customers with cust-1001's phone in other notations."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.cli_runner import run_ledger
from tests.factories import event
from tests.page_support import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    Server,
    Watched,
    append,
    ledger_server,
    load_demo,
    no_horizontal_overflow,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("duplicates")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    load_demo(db)
    # cust-1001's phone is "+49 30 1234567": a chat and a web-shop order made
    # these two with it written otherwise.
    append(
        db,
        [
            event(
                "customer.created", "chat-77", {"card": {"name": "Anna P.", "phone": "030 1234567"}}
            ),
            event(
                "customer.created",
                "shop-4711",
                {"card": {"name": "A. Petrova", "phone": "+49 (0)30 123-4567"}},
            ),
        ],
    )
    with ledger_server(db, tmp) as server:
        yield server


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(10_000)
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def test_finding_duplicates_and_marking_one_not_a_duplicate(
    server: Server, watched: Watched
) -> None:
    page = watched.page
    page.goto(server.url("/customers/cust-1002"))
    expect(page.locator("#duplicates-notice")).to_have_count(0)  # only when there are some
    page.goto(server.url("/customers/cust-1001"))
    notice = page.locator("#duplicates-notice a")
    expect(notice).to_have_text("Possible duplicates (2)")
    notice.click()
    assert page.url == server.url("/customers/cust-1001/duplicates")
    rows = page.locator("li.duplicate")
    expect(rows).to_have_count(2)
    expect(rows.first.locator(".duplicate-name")).to_have_text("Anna P.")
    expect(rows.first.locator(".reasons")).to_have_text(
        "Same phone +49 30 \u2022\u2022\u2022\u2022 67"
    )
    assert "1234567" not in page.content()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "duplicates-desktop.png"))
    page.locator("li.duplicate[data-customer-id=shop-4711] summary").click()
    page.screenshot(path=str(ARTIFACTS / "duplicates-form.png"))  # docs/duplicates.png
    page.fill(
        "li.duplicate[data-customer-id=shop-4711] input[name=reason]", "Her mother, same flat"
    )
    page.locator("li.duplicate[data-customer-id=shop-4711] button[type=submit]").click()
    # By the other card's name, not its id.
    expect(page.locator(".notice")).to_have_text("Marked A. Petrova as not a duplicate.")
    assert page.url == server.url("/customers/cust-1001/duplicates")
    expect(rows).to_have_count(1)
    expect(page.locator("li.duplicate[data-customer-id=shop-4711]")).to_have_count(0)
    page.reload()  # the notice is shown once
    expect(page.locator(".notice")).to_have_count(0)
    # The candidate's link opens its card: cust-1001 and shop-4711 (the mark is
    # of cust-1001 and shop-4711 only).
    page.locator("li.duplicate[data-customer-id=chat-77] a.duplicate-name").click()
    assert page.url == server.url("/customers/chat-77")
    expect(page.locator("#duplicates-notice a")).to_have_text("Possible duplicates (2)")
    page.goto(server.url("/customers/cust-1001"))
    expect(page.locator("#duplicates-notice a")).to_have_text("Possible duplicates (1)")
    history = run_ledger(
        "audit", "history", "--customer", "shop-4711", "--format", "json", db=server.db
    )
    marks = [json.loads(line) for line in history.stdout.splitlines() if "not_duplicate" in line]
    assert [(m["actor"]["id"], m["data"]["reason"]) for m in marks] == [
        ("local", "Her mother, same flat")
    ]
    assert watched.errors == []


def test_the_list_fits_a_phone(server: Server, browser: Browser) -> None:
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        page.goto(server.url("/customers/chat-77/duplicates"))
        expect(page.locator("h1")).to_contain_text("Possible duplicates of")
        width, viewport = no_horizontal_overflow(page)
        assert width <= viewport
        page.screenshot(path=str(ARTIFACTS / "duplicates-phone.png"), full_page=True)
    finally:
        context.close()
