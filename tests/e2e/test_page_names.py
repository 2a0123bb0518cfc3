"""The card page shows people by name and summaries that name things, the same
text the API and `ledger tab` give for the same event (Chromium against a real
`ledger --people PATH serve --user ID` on the demo data)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

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
    tab_json,
)

CUSTOMER = "cust-1001"
PAGE_USER = "u-9"  # never acted: only the people directory knows her name
PEOPLE = "id,name\nu-9,Lena Vogt\n"
# Ids that must not show where a name is known.
# A user's id, or a subject's (the demo's SMS, tasks, emails: `cust-1001-s1`).
IDS = re.compile(r"\bu-\d+\b|user:|\bcust-\d+-\w+")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("names")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    load_demo(db)
    people = tmp / "people.csv"
    people.write_text(PEOPLE)
    with ledger_server(db, tmp, people=people, user=PAGE_USER) as running:
        yield running


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(10_000)
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def card(server: Server, query: str = "") -> str:
    return server.url(f"/customers/{CUSTOMER}" + (f"?{query}" if query else ""))


def api(server: Server, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(server.url(path), timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def visible_text(page: Page) -> str:
    return str(page.locator("main").inner_text())


def test_a_page_users_action_shows_by_name(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(card(server, "tab=tasks"))
    pending = page.locator("tr[data-task-id]").filter(
        has=page.locator("button[data-action=complete]")
    )
    title = pending.first.locator("td.title").inner_text().strip()
    pending.first.locator("button[data-action=complete]").click()
    expect(page.locator("#customer-name")).to_be_visible()
    page.goto(card(server))
    newest = page.locator("tr[data-event-id]").first
    assert newest.locator("td[data-label=What]").inner_text().strip() == f"Task “{title}” completed"
    assert newest.locator("td[data-label=By]").inner_text().strip() == "Lena Vogt"
    # The stored event names the configured user, not `local`.
    item = api(server, f"/v1/customers/{CUSTOMER}/tabs/timeline?limit=1")["items"][0]
    assert item["actor"] == {"kind": "user", "id": PAGE_USER, "name": "Lena Vogt"}
    assert not watched.errors and not watched.dialogs


def test_an_edit_says_whom_it_assigned_by_name(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(card(server, "tab=tasks"))
    editable = page.locator("tr[data-task-id]").filter(
        has=page.get_by_role("link", name=re.compile("^Edit"))
    )
    current = editable.first.locator("td[data-label=Assignee]").inner_text().strip()
    # One of the demo's agents (whom `ledger tab` names too), not the current one.
    user, name = ("u-2", "Ivan Novak") if current == "Maria Lopez" else ("u-1", "Maria Lopez")
    editable.first.get_by_role("link", name=re.compile("^Edit")).click()
    page.select_option("#edit-assignee", user)
    page.click("#edit-form button[type=submit]")
    expect(page.locator(".notice")).to_have_text(f"Task saved: assigned to {name}.")
    assert not watched.errors


def test_a_dialogue_and_an_order_name_their_people(server: Server, watched: Watched) -> None:
    lena = {"kind": "user", "id": PAGE_USER}  # sent without a name: the directory knows it
    gateway = {"kind": "system", "id": "chat-gateway", "name": "Chat gateway"}
    append(
        server.db,
        [
            event(
                "chat.started",
                "cust-1002",
                {"dialog_id": "names-d1", "channel": "whatsapp"},
                actor=gateway,
            ),
            event(
                "chat.message",
                "cust-1002",
                {
                    "dialog_id": "names-d1",
                    "message_id": "names-m1",
                    "direction": "outbound",
                    "text": "Hello",
                },
                actor=lena,
            ),
            event(
                "order.created", "cust-1002", {"order_id": "names-o1", "status": "new"}, actor=lena
            ),
        ],
    )
    page = watched.page
    page.goto(server.url("/customers/cust-1002/chats/names-d1"))
    expect(page.locator("h1")).to_have_text("Dialogue on WhatsApp")  # as the tabs spell it
    expect(page.locator("#messages .author")).to_have_text("Lena Vogt")
    answer = api(server, "/v1/customers/cust-1002/chats/names-d1")
    assert answer["items"][0]["author"] == {**lena, "name": "Lena Vogt"}
    page.goto(server.url("/customers/cust-1002/orders/names-o1"))
    expect(page.locator("td[data-label=By]").first).to_have_text("Lena Vogt")
    expect(page.get_by_text(re.compile("by Lena Vogt$"))).to_be_visible()  # the last change
    order = api(server, "/v1/customers/cust-1002/orders/names-o1")
    assert order["changed_by"]["name"] == "Lena Vogt"
    assert not watched.errors


def test_names_not_ids(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(card(server, "tab=tasks"))
    assignees = page.locator("td[data-label=Assignee]").all_inner_texts()
    assert assignees and all(a.strip() and not IDS.search(a) for a in assignees), assignees
    tasks = api(server, f"/v1/customers/{CUSTOMER}/tabs/tasks")["items"]
    assert all(t["assignee_id"] and t["assignee_name"] for t in tasks)  # raw id and its name
    for query in ("", "tab=segments", "tab=card", "tab=tasks"):
        page.goto(card(server, query))
        text = visible_text(page)
        assert not IDS.search(text), (query, IDS.findall(text))
        assert "None" not in text and "in_progress" not in text
    page.goto(card(server, "tab=segments"))
    chips = [c.strip() for c in page.locator(".members .chip").all_inner_texts()]
    assert chips == ["Churn risk", "VIP"]
    assert "seg-" not in visible_text(page)
    page.goto(card(server))
    # A name reads on one line at 1280 px, never squeezed letter by letter
    # beside a long summary.
    lines = page.eval_on_selector_all(
        'td[data-label="By"]',
        """cells => cells.map(c => {
            const r = document.createRange(); r.selectNodeContents(c);
            return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size;
        })""",
    )
    assert lines and max(lines) == 1, lines
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # docs/card-names.png: the header and the newest rows.
    page.screenshot(
        path=str(ARTIFACTS / "card-names.png"),
        clip={"x": 0, "y": 0, "width": DESKTOP["width"], "height": 600},
    )
    assert not watched.errors


def test_the_page_the_api_and_the_cli_say_the_same(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(card(server))
    shown = {
        row.get_attribute("data-event-id"): row.locator("td[data-label=What]").inner_text().strip()
        for row in page.locator("tr[data-event-id]").all()
    }
    from_api = {
        i["event_id"]: i["summary"]
        for i in api(server, f"/v1/customers/{CUSTOMER}/tabs/timeline")["items"]
    }
    from_cli = {
        i["event_id"]: i["summary"] for i in tab_json(server.db, CUSTOMER, "timeline")["items"]
    }
    assert shown == from_api == from_cli
    human = run_ledger("tab", CUSTOMER, "timeline", db=server.db)
    assert human.returncode == 0, human.stderr
    for summary in from_api.values():
        assert summary[:60] in human.stdout
    # Every event names its subject: no task, email or dialogue by id alone.
    assert not [s for s in shown.values() if re.search(r"(Task|Email|Chat) cust-", s)]
    assert any(s.startswith("Task “") for s in shown.values())
    assert any(s.startswith("Email “") for s in shown.values())
    # One duration format on every tab.
    page.goto(card(server, "tab=visits"))
    durations = page.locator("td[data-label=Duration]").all_inner_texts()
    assert durations and all(re.fullmatch(r"(\d+ min )?\d+ s", d.strip()) for d in durations)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE])
def test_long_names_fit(server: Server, browser: Browser, viewport: dict[str, int]) -> None:
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        for query in ("", "tab=tasks", "tab=segments"):
            page.goto(card(server, query))
            scroll, client = no_horizontal_overflow(page)
            assert scroll <= client, (query, scroll, client)
    finally:
        context.close()
