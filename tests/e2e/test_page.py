"""The customer card page in a real Chromium against a real `ledger serve`
on a store loaded with the demo data (see tests/page_support.py)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from api.page_view import KIND_ITEM_LABELS
from ledger.summaries import channel_text, duration_text, field_label, utm_text, words
from tests.cli_runner import run_ledger
from tests.page_support import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    Key,
    Server,
    Watched,
    append,
    axe_violations,
    ledger_server,
    load_demo,
    no_horizontal_overflow,
    tab_json,
    write_access_file,
)

CUSTOMER = "cust-1001"
TABS = ("timeline", "tasks", "visits", "segments", "chats", "emails", "orders", "card")

MANAGER = Key("manager", "manager-token-1", ("read", "tasks"), "u-42")
AGENT = Key("agent", "agent-token-2", ("read", "tasks"), "u-7")
READER = Key("reader", "reader-token-3", ("read",))
INGEST = Key("ingester", "ingest-token-4", ("ingest",))
CRM = Key("crm", "crm-token-5", ("read", "act-as"))  # acts for the user named at sign-in
RIGHTS = """
[roles]
manager = ["tasks.edit", "tasks.reopen", "tasks.delete"]

[users]
u-42 = ["manager"]
u-7 = ["tasks.edit"]
"""


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Open mode (no access file, loopback): nobody is asked to sign in."""
    tmp = tmp_path_factory.mktemp("open")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    load_demo(db)
    with ledger_server(db, tmp) as server:
        yield server


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("secured")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    load_demo(db)
    access = write_access_file(tmp / "access.toml", [MANAGER, AGENT, READER, INGEST, CRM])
    rights = tmp / "rights.toml"
    rights.write_text(RIGHTS)
    with ledger_server(db, tmp, access=access, rights=rights) as server:
        yield server


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(10_000)  # a missing element fails in seconds, not 30
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def card(server: Server, customer: str = CUSTOMER, query: str = "") -> str:
    return server.url(f"/customers/{customer}" + (f"?{query}" if query else ""))


def cells(page: Page, row_selector: str) -> dict[str, str]:
    """One table row as {column label: text}."""
    row = page.locator(row_selector).first
    labels = row.locator("td").evaluate_all(
        "tds => tds.map(td => [td.dataset.label, td.innerText.trim()])"
    )
    return {label: text for label, text in labels}


def sign_in(
    page: Page, server: Server, key: Key, customer: str = CUSTOMER, act_as: str | None = None
) -> None:
    page.goto(card(server, customer, "tab=tasks"))
    expect(page.locator("h1")).to_have_text("Sign in")
    page.fill("#key", key.token)
    if act_as is not None:
        page.fill("#act-as", act_as)
    page.click("button[type=submit]")
    expect(page.locator("#customer-name")).to_be_visible()


def first_task(db: str, customer: str, status: str) -> dict[str, Any]:
    items = tab_json(db, customer, "tasks")["items"]
    return next(t for t in items if t["status"] == status)


def stored_task(db: str, customer: str, task_id: str) -> dict[str, Any] | None:
    items = tab_json(db, customer, "tasks")["items"]
    return next((t for t in items if t["task_id"] == task_id), None)


# -- what the page shows ----------------------------------------------------------------


def test_every_tab_shows_what_ledger_tab_returns(open_server: Server, watched: Watched) -> None:
    page = watched.page
    db = open_server.db
    answers = {tab: tab_json(db, CUSTOMER, tab) for tab in TABS}
    everything = tab_json(db, CUSTOMER, "timeline", "--limit", "1000")
    page.goto(card(open_server, query="tz=Europe/Berlin"))
    card_items = answers["card"]["items"]
    name = next(c["new"] for c in card_items if c["field"] == "name")
    expect(page.locator("#customer-name")).to_have_text(name)
    for tab in TABS:
        expected = len(everything["items"]) if tab == "timeline" else len(answers[tab]["items"])
        expect(page.locator(f"nav.tabs a[data-tab={tab}] .count")).to_have_text(str(expected))

    timeline = answers["timeline"]["items"]
    row = cells(page, "tbody tr")
    assert row["What"] == timeline[0]["summary"]
    assert row["Kind"] == KIND_ITEM_LABELS[timeline[0]["kind"]]
    first = page.locator("tbody tr").first
    assert first.get_attribute("data-event-id") == timeline[0]["event_id"]
    # Times are in the viewer's zone: September in Berlin is UTC+2.
    stamp = first.locator("time").get_attribute("datetime")
    assert stamp is not None and stamp.endswith("+02:00")

    for tab in TABS[1:]:
        page.click(f"nav.tabs a[data-tab={tab}]")
        expect(page.locator("nav.tabs a[aria-current=page]")).to_have_attribute("data-tab", tab)
        items = answers[tab]["items"]
        expect(page.locator("table.rows tbody tr")).to_have_count(len(items))
        got = cells(page, "table.rows tbody tr")
        item = items[0]
        if tab == "tasks":
            assert got["Task"] == item["title"]
            assert got["Status"] == words(item["status"])
            assert got["Assignee"] == (item["assignee_name"] or item["assignee_id"] or "—")
        elif tab == "visits":
            assert got["Source"] == item["source"]
            assert got["Channel"] == channel_text(item["channel"])
            assert got["Duration"] == duration_text(item["duration_s"])
            # Each visit's campaign, the one a producer sent in version 1 of the
            # contract (the flat `campaign`) included.
            shown = page.locator("table.rows tbody td[data-label=Campaign]").all_inner_texts()
            assert shown == [utm_text(i["utm"]) for i in items]
            assert any(i["utm"] for i in items)
        elif tab == "segments":
            assert got["Change"] == words(item["change"])
            assert got["Segment"] == (item["segment_name"] or item["segment_id"])
        elif tab == "chats":
            assert (got["Status"], got["Messages"]) == (
                words(item["status"]),
                str(item["message_count"]),
            )
        elif tab == "emails":
            assert got["Subject"] == item["subject"]
            assert (got["Opens"], got["Clicks"]) == (str(item["open_count"]), str(item["clicks"]))
            assert got["Delivered"] == ("yes" if item["delivered"] else "no")
        elif tab == "orders":
            assert got["Order"] == (item["number"] or item["order_id"])
            assert got["Total"] == f"{item['total']} {item['currency']}"
            assert got["Status"] == item["status"].capitalize()
        elif tab == "card":
            assert (got["Field"], got["New"]) == (field_label(item["field"]), str(item["new"]))
    assert watched.errors == [] and watched.dialogs == []


def test_timeline_paging_reaches_the_oldest_event_without_repeats(
    open_server: Server, watched: Watched
) -> None:
    page = watched.page
    everything = tab_json(open_server.db, CUSTOMER, "timeline", "--limit", "1000")["items"]
    page.goto(card(open_server))
    seen: list[str] = []
    while True:
        ids = page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.eventId)")
        seen.extend(ids)
        older = page.locator("a#older")
        if older.count() == 0:
            break
        older.click()
    assert len(seen) == len(set(seen)) == len(everything) > 50  # more than one page
    assert seen == [e["event_id"] for e in everything]  # newest first, down to the oldest


def test_kind_filter_shows_only_that_kind(open_server: Server, watched: Watched) -> None:
    page = watched.page
    emails = tab_json(open_server.db, CUSTOMER, "timeline", "--kind", "emails")["items"]
    page.goto(card(open_server))
    page.check("input[name=kind][value=emails]")
    page.click("form.filter button[type=submit]")
    expect(page.locator("tbody tr")).to_have_count(len(emails))
    kinds = page.locator("tbody tr td[data-label=Kind]").all_inner_texts()
    assert set(kinds) == {"Email"}
    # The choices read as words; what they send stays the API's kinds.
    expect(page.locator("label.check", has=page.locator("input[value=sms]"))).to_have_text("SMS")
    expect(page.locator("label.check", has=page.locator("input[value=card]"))).to_have_text(
        "Card changes"
    )


@pytest.mark.parametrize("customer", ["cust-1001", "cust-1002"])
def test_last_email_state_and_chat_links(
    open_server: Server, watched: Watched, customer: str
) -> None:
    page = watched.page
    emails = tab_json(open_server.db, customer, "emails")
    last = emails["last_email"]
    page.goto(card(open_server, customer, "tab=emails"))
    badge = page.locator("#last-email")
    expect(badge).to_have_text("Last email opened" if last["opened"] else "Last email not opened")
    row = page.locator(f"tr[data-message-id='{last['message_id']}']")
    first_open = row.locator("td[data-label='First opened']")
    if last["opened"]:
        expect(first_open).not_to_have_text("not opened")
    else:
        expect(first_open).to_have_text("not opened")

    chats = tab_json(open_server.db, customer, "chats")["items"]
    page.click("nav.tabs a[data-tab=chats]")
    for chat in chats:
        link = page.locator(f"tr[data-dialog-id='{chat['dialog_id']}'] a.dialog-link")
        # The start date opens the dialogue in the app, not the producer's url.
        expect(link).to_have_attribute("href", f"/customers/{customer}/chats/{chat['dialog_id']}")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", link.inner_text().strip())


def test_unknown_customer_is_a_friendly_404(open_server: Server, watched: Watched) -> None:
    response = watched.page.goto(card(open_server, "no-such-customer"))
    assert response is not None and response.status == 404
    expect(watched.page.locator("h1")).to_have_text("No such customer")
    expect(watched.page.locator("main")).to_contain_text("no-such-customer")


def test_an_empty_tab_says_so(open_server: Server, watched: Watched) -> None:
    append(
        open_server.db,
        [
            {
                "event_id": "0b1f5d9e-4a41-4c55-8a7c-1d0c2f3e4a01",
                "type": "customer.created",
                "customer_id": "cust-quiet",
                "occurred_at": "2026-10-01T09:00:00Z",
                "actor": {"kind": "system", "id": "crm"},
                "source": "crm",
                "data": {"card": {"name": "Quiet Customer"}},
            }
        ],
    )
    watched.page.goto(card(open_server, "cust-quiet", "tab=chats"))
    expect(watched.page.locator(".empty")).to_have_text("No chats for this customer yet.")
    expect(watched.page.locator("#last-email")).to_have_text("No email sent yet")


# -- untrusted text ---------------------------------------------------------------------

HOSTILE_NAME = '<script>alert("name")</script><img src=x onerror=alert(1)>'
HOSTILE_NOTE = '<b>bold</b><script>alert("note")</script><a href="javascript:alert(2)">x</a>'
HOSTILE_CHAT = '<img src=x onerror=alert("chat")>'


def _hostile_events() -> list[dict[str, Any]]:
    def event(n: int, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "event_id": f"7d3b2c1a-0000-4000-8000-{n:012d}",
            "type": type_,
            "customer_id": "cust-xss",
            "occurred_at": f"2026-10-0{n}T10:00:00Z",
            "actor": {"kind": "user", "id": "u-1", "name": "<i>Mallory</i>"},
            "source": "crm-ui",
            "data": data,
        }

    return [
        event(1, "customer.created", {"card": {"name": HOSTILE_NAME}}),
        event(2, "note.added", {"note_id": "n-1", "text": HOSTILE_NOTE}),
        event(
            3,
            "chat.started",
            {"dialog_id": "d-1", "channel": "website", "url": "javascript:alert('url')"},
        ),
        event(
            4,
            "chat.message",
            {"dialog_id": "d-1", "message_id": "m-1", "direction": "inbound", "text": HOSTILE_CHAT},
        ),
    ]


def test_markup_from_producers_renders_as_text(open_server: Server, watched: Watched) -> None:
    append(open_server.db, _hostile_events())
    page = watched.page
    page.goto(card(open_server, "cust-xss"))
    expect(page.locator("#customer-name")).to_have_text(HOSTILE_NAME)
    summaries = page.locator("td.summary").all_inner_texts()
    assert any(HOSTILE_NOTE in s for s in summaries), summaries
    assert any(HOSTILE_CHAT in s for s in summaries), summaries
    expect(page.locator("td[data-label=By]").first).to_have_text("<i>Mallory</i>")
    assert page.locator("main script, main img, main b, main i").count() == 0
    page.click("nav.tabs a[data-tab=chats]")
    # A `javascript:` dialogue URL is never made a link, here or in the dialogue.
    expect(page.locator("tr[data-dialog-id=d-1]")).to_be_visible()
    assert page.locator("a[href^='javascript']").count() == 0
    page.click("tr[data-dialog-id=d-1] a.dialog-link")
    expect(page.locator(".message-text").first).to_have_text(HOSTILE_CHAT)
    assert page.locator("#messenger-link, a[href^='javascript']").count() == 0
    assert page.locator("main script, main img, main b, main i").count() == 0
    page.wait_for_timeout(300)  # let any injected handler fire
    assert watched.dialogs == []
    assert watched.errors == []


# -- layout -----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_no_horizontal_overflow_and_screenshots(
    open_server: Server, browser: Browser, size: str, viewport: dict[str, int]
) -> None:
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for tab in TABS:
            page.goto(card(open_server, query=f"tab={tab}"))
            scroll, client = no_horizontal_overflow(page)
            assert scroll <= client, f"{tab} at {size}: {scroll}px wide in a {client}px window"
            if tab in ("timeline", "tasks"):
                page.screenshot(path=str(ARTIFACTS / f"card-{tab}-{size}.png"))
        if size == "phone":
            # Tables became cards: each cell carries its column's label.
            page.goto(card(open_server, query="tab=tasks"))
            header = page.locator("table.rows thead")
            assert header.bounding_box() is None or header.bounding_box()["width"] <= 1  # type: ignore[index]
    finally:
        context.close()


def test_readable_and_navigable_without_javascript(open_server: Server, browser: Browser) -> None:
    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(card(open_server))
        page.click("nav.tabs a[data-tab=visits]")
        expect(page.locator("#tab-title")).to_have_text("Visits")
        page.click("nav.tabs a[data-tab=timeline]")
        page.click("a#older")
        expect(page.locator("a", has_text="Newest")).to_be_visible()
    finally:
        context.close()


def test_keyboard_reaches_tabs_and_every_button_is_labelled(
    open_server: Server, watched: Watched
) -> None:
    page = watched.page
    page.goto(card(open_server, query="tab=tasks"))
    names = page.locator("main button, main a.button").evaluate_all(
        "els => els.map(e => e.getAttribute('aria-label') || e.innerText.trim())"
    )
    assert names and all(names)
    # Tab from the top: the skip link first, then on to the tab links.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.tab") == "visits":
            break
    else:
        raise AssertionError("the Visits tab is not reachable by keyboard")
    page.keyboard.press("Enter")
    expect(page.locator("#tab-title")).to_have_text("Visits")


# -- signing in and acting ---------------------------------------------------------------


def test_open_mode_asks_nothing_and_acts(open_server: Server, watched: Watched) -> None:
    page = watched.page
    task = first_task(open_server.db, "cust-1006", "pending")
    page.goto(card(open_server, "cust-1006", "tab=tasks"))
    expect(page.locator("#customer-name")).to_be_visible()
    assert page.locator("a", has_text="Sign out").count() == 0
    page.locator(f"tr[data-task-id='{task['task_id']}'] button[data-action=complete]").click()
    expect(page.locator(".notice")).to_have_text("Task completed.")
    row = page.locator(f"tr[data-task-id='{task['task_id']}']")
    expect(row.locator("td[data-label=Status]")).to_have_text("Completed")


def test_sign_in_is_required_and_the_cookie_is_strict(
    secured_server: Server, watched: Watched
) -> None:
    page = watched.page
    page.goto(card(secured_server))
    assert "/signin" in page.url
    page.fill("#key", "not-a-key")
    page.click("button[type=submit]")
    expect(page.locator(".notice.error")).to_have_text("That access key is not valid.")
    page.fill("#key", INGEST.token)
    page.click("button[type=submit]")
    expect(page.locator(".notice.error")).to_contain_text("cannot read")
    page.fill("#key", READER.token)
    page.click("button[type=submit]")
    expect(page.locator("#customer-name")).to_be_visible()
    assert page.url == card(secured_server)
    cookies = page.context.cookies()
    session = [c for c in cookies if c["name"] == "ledger_session"]
    assert len(session) == 1
    assert session[0]["httpOnly"] is True and session[0]["sameSite"] == "Strict"
    assert READER.token not in session[0]["value"]
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    # A read key sees the tasks but no buttons.
    page.click("nav.tabs a[data-tab=tasks]")
    expect(page.locator("tbody tr").first).to_be_visible()
    assert page.locator("td.actions button, td.actions a").count() == 0
    page.get_by_role("button", name="Sign out").click()
    page.goto(card(secured_server))
    assert "/signin" in page.url


def test_a_form_post_without_the_csrf_token_is_refused(
    secured_server: Server, watched: Watched
) -> None:
    page = watched.page
    sign_in(page, secured_server, MANAGER, "cust-1002")
    task = first_task(secured_server.db, "cust-1002", "pending")
    action = f"/customers/cust-1002/tasks/{task['task_id']}/complete"
    response = page.request.post(secured_server.url(action), form={"tz": "UTC"})
    assert response.status == 403
    forged = page.request.post(secured_server.url(action), form={"csrf": "x" * 43})
    assert forged.status == 403
    assert first_task(secured_server.db, "cust-1002", "pending")["task_id"] == task["task_id"]
    # Signing in needs the form's token too.
    fresh = page.request.post(secured_server.url("/signin"), form={"key": MANAGER.token})
    assert fresh.status == 403


def test_rights_decide_the_buttons_and_completing_moves_the_task(
    secured_server: Server, browser: Browser
) -> None:
    db = secured_server.db
    task = first_task(db, "cust-1003", "pending")
    row_selector = f"tr[data-task-id='{task['task_id']}']"
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        sign_in(page, secured_server, AGENT, "cust-1003")
        buttons = page.locator(f"{row_selector} td.actions").inner_text()
        assert "Complete" in buttons and "Edit" in buttons and "Delete" not in buttons
        page.locator(f"{row_selector} button[data-action=complete]").click()
        expect(page.locator(".notice")).to_have_text("Task completed.")
        expect(page.locator(f"{row_selector} td[data-label=Status]")).to_have_text("Completed")
        # u-7 may not reopen: no Reopen (and still no Delete) on the completed task.
        assert page.locator(f"{row_selector} td.actions button").count() == 0
    finally:
        context.close()
    stored = stored_task(db, "cust-1003", task["task_id"])
    assert stored["status"] == "completed"
    history = tab_json(db, "cust-1003", "timeline", "--kind", "tasks", "--limit", "1")["items"][0]
    assert history["type"] == "task.completed" and history["actor"]["id"] == "u-7"


def test_a_manager_deletes_a_task(secured_server: Server, browser: Browser) -> None:
    db = secured_server.db
    task = first_task(db, "cust-1004", "pending")
    context = browser.new_context(viewport=DESKTOP)
    try:
        watched = Watched(context.new_page(), accept_dialogs=True)
        page = watched.page
        sign_in(page, secured_server, MANAGER, "cust-1004")
        page.locator(f"tr[data-task-id='{task['task_id']}'] button[data-action=delete]").click()
        expect(page.locator(".notice")).to_have_text("Task deleted.")
        expect(page.locator(f"tr[data-task-id='{task['task_id']}']")).to_have_count(0)
        assert len(watched.dialogs) == 1  # the page asked first
    finally:
        context.close()
    remaining = {t["task_id"] for t in tab_json(db, "cust-1004", "tasks")["items"]}
    assert task["task_id"] not in remaining


def test_a_refused_action_lands_back_on_the_card_with_a_plain_sentence(
    secured_server: Server, watched: Watched
) -> None:
    page = watched.page
    sign_in(page, secured_server, AGENT, "cust-1005")
    task = first_task(secured_server.db, "cust-1005", "pending")
    csrf = page.locator("input[name=csrf]").first.input_value()
    # The agent has no Delete button; a hand-made form is refused by the rules,
    # and the browser lands back on the card (post/redirect/get), told why.
    response = page.request.post(
        secured_server.url(f"/customers/cust-1005/tasks/{task['task_id']}/delete"),
        form={"csrf": csrf, "tz": "UTC"},
        max_redirects=0,
    )
    assert response.status == 303
    assert response.headers["location"] == "/customers/cust-1005?tab=tasks"
    page.goto(secured_server.url(response.headers["location"]))
    expect(page.locator(".notice.error")).to_have_text("You are not allowed to delete this task.")
    page.reload()  # shown once
    expect(page.locator(".notice")).to_have_count(0)
    assert stored_task(secured_server.db, "cust-1005", task["task_id"]) == task


def test_editing_a_task(secured_server: Server, watched: Watched) -> None:
    page = watched.page
    db = secured_server.db
    task = first_task(db, "cust-1006", "pending")
    sign_in(page, secured_server, MANAGER, "cust-1006")
    page.locator(f"tr[data-task-id='{task['task_id']}'] a", has_text="Edit").click()
    page.fill("#edit-title", "Call back <tomorrow>")
    page.select_option("#edit-assignee", "u-42")  # picked by name from a list
    page.click("#edit-form button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Task saved: title changed, assigned to u-42.")
    row = page.locator(f"tr[data-task-id='{task['task_id']}']")
    expect(row.locator("td[data-label=Task]")).to_have_text("Call back <tomorrow>")
    stored = stored_task(db, "cust-1006", task["task_id"])
    assert (stored["title"], stored["assignee_id"]) == ("Call back <tomorrow>", "u-42")
    assert stored["due_at"] == task["due_at"]  # untouched fields are not changed


def test_signing_in_lands_on_the_customer_search_which_opens_a_card(
    secured_server: Server, watched: Watched
) -> None:
    page = watched.page
    page.goto(secured_server.url("/signin"))  # no `next`
    page.fill("#key", READER.token)
    page.click("button[type=submit]")
    assert page.url == secured_server.url("/customers")
    expect(page.locator("h1")).to_have_text("Customers")
    search = page.get_by_label("Name, phone, e-mail or customer id")
    search.fill("cust-nobody <b>")
    search.press("Enter")
    expect(page.locator("#search-result")).to_have_text("No customer found for cust-nobody <b>.")
    expect(page.get_by_label("Name, phone, e-mail or customer id")).to_have_value("cust-nobody <b>")
    assert page.locator("main b").count() == 0
    page.get_by_label("Name, phone, e-mail or customer id").fill(CUSTOMER)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#customer-name")).to_be_visible()
    assert page.url == card(secured_server)
    assert watched.errors == [] and watched.dialogs == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_root_is_the_customer_search(
    open_server: Server, browser: Browser, viewport: dict[str, int]
) -> None:
    context = browser.new_context(viewport=viewport)
    try:
        watched = Watched(context.new_page())
        page = watched.page
        page.goto(open_server.url("/"))
        assert page.url == open_server.url("/customers")
        expect(page.locator("h1")).to_have_text("Customers")
        # The search box has the focus: type, then Enter.
        assert page.evaluate("document.activeElement.id") == "q"
        page.keyboard.type("cust-1001")
        page.keyboard.press("Enter")
        expect(page.locator("#customer-name")).to_be_visible()
        page.go_back()
        scroll, client = no_horizontal_overflow(page)
        assert scroll <= client
        assert watched.errors == []
    finally:
        context.close()


def test_every_page_leads_back_to_the_customer_search(
    open_server: Server, watched: Watched
) -> None:
    page = watched.page
    for path in ("", "/duplicates", "/orders/cust-1001-o1", "/chats/cust-1001-d0"):
        page.goto(card(open_server) + path)
        expect(page.locator("#find-customer")).to_have_text("Find a customer")
    page.click("#find-customer")
    expect(page.locator("h1")).to_have_text("Customers")
    # The search itself offers no link to itself.
    expect(page.locator("#find-customer")).to_have_count(0)
    page.get_by_label("Name, phone, e-mail or customer id").fill("Anna Petrova")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Anna Petrova").click()
    expect(page.locator("#customer-name")).to_have_text("Anna Petrova")
    assert watched.errors == [] and watched.dialogs == []


def test_every_page_meets_wcag_21_aa(open_server: Server, watched: Watched) -> None:
    """axe-core finds nothing on any tab, the pages a tab leads to, or the search."""
    page = watched.page
    paths = [f"/customers/{CUSTOMER}?tab={tab}" for tab in TABS] + [
        f"/customers/{CUSTOMER}/orders/cust-1001-o1",
        f"/customers/{CUSTOMER}/chats/cust-1001-d0",
        f"/customers/{CUSTOMER}/duplicates",
        "/customers?q=Anna",
    ]
    found = {}
    for path in paths:
        page.goto(open_server.url(path))
        found[path] = axe_violations(page)
    assert found == {path: [] for path in paths}


def test_demo_says_how_to_see_the_card(tmp_path: Path, open_server: Server) -> None:
    result = run_ledger("demo", db=f"sqlite:///{tmp_path / 'ledger.db'}")
    assert result.returncode == 0, result.stderr
    tail = result.stdout.strip().splitlines()[-3:]
    assert tail[1].strip() == "ledger serve"
    url = tail[2].removeprefix("then open ")
    assert url == f"http://127.0.0.1:8080/customers/{CUSTOMER}"
    # The same path on a running server is the demo customer's card.
    with urllib.request.urlopen(open_server.url(urlsplit(url).path)) as response:
        assert response.status == 200
        assert "Anna Petrova" in response.read().decode()


@pytest.mark.parametrize(("user", "can_delete"), [("u-42", True), ("u-7", False)])
def test_an_act_as_key_acts_for_the_user_named_at_sign_in(
    secured_server: Server, watched: Watched, user: str, can_delete: bool
) -> None:
    page = watched.page
    sign_in(page, secured_server, CRM, "cust-1002", act_as=user)
    expect(page.locator(".bar .who")).to_have_text(f"Signed in as crm ({user})")
    pending = page.locator("tr", has=page.locator("td[data-label=Status]", has_text="pending"))
    expect(pending.first.locator("button[data-action=complete]")).to_be_visible()
    assert (pending.first.locator("button[data-action=delete]").count() == 1) is can_delete
