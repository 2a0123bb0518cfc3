"""The card's "Add note" and "Add task" forms and what every form says after
it posted (post/redirect/get, refusals as plain sentences), and the layout at
1280 and 375 px with long summaries, in a real Chromium against a real
`ledger serve` holding the demo data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.cli_runner import run_ledger
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("adding")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    load_demo(db)
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


def card(server: Server, customer: str, query: str = "") -> str:
    return server.url(f"/customers/{customer}" + (f"?{query}" if query else ""))


def test_adding_a_note_shows_it_at_once_on_the_card(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(card(server, "cust-1002"))
    page.locator("#add-note summary").click()
    page.fill("#note-text", "Asked for a <b>callback</b> on Friday")
    page.locator("#add-note button[type=submit]").click()
    expect(page.locator(".notice")).to_have_text("Note added.")
    assert page.url == card(server, "cust-1002")  # the card's URL, not the form's
    first = page.locator("tbody tr").first
    expect(first.locator("td[data-label=What]")).to_contain_text(
        "Asked for a <b>callback</b> on Friday"
    )
    expect(first.locator("td[data-label=Kind]")).to_have_text("Note")
    stored = tab_json(server.db, "cust-1002", "timeline", "--limit", "1")["items"][0]
    assert stored["type"] == "note.added" and stored["actor"]["id"] == "local"
    page.reload()  # the notice is shown once, and nothing is posted again
    expect(page.locator(".notice")).to_have_count(0)
    assert tab_json(server.db, "cust-1002", "timeline", "--limit", "1")["items"][0] == stored
    assert watched.errors == []


def test_adding_a_task_with_an_assignee_picked_by_name(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(card(server, "cust-1003", "tz=Europe/Berlin"))
    page.locator("#add-task summary").click()
    options = page.locator("#task-assignee option").all_inner_texts()
    named = [o for o in options if "(u-2)" in o]
    assert named and not named[0].startswith("u-2"), options  # a name, the id beside it
    page.fill("#task-title", "Bring the signed contract")
    page.fill("#task-due", "2026-12-01T09:30")
    page.select_option("#task-assignee", "u-2")
    page.locator("#add-task button[type=submit]").click()
    expect(page.locator(".notice")).to_have_text("Task added: Bring the signed contract.")
    assert page.url == card(server, "cust-1003", "tab=tasks&tz=Europe%2FBerlin")
    tasks = tab_json(server.db, "cust-1003", "tasks")["items"]
    task = next(t for t in tasks if t["title"] == "Bring the signed contract")
    assert task["assignee_id"] == "u-2" and task["due_at"] is not None
    assert task["due_at"].startswith("2026-12-01T09:30:00+01:00")  # typed in Berlin time
    row = page.locator(f"tr[data-task-id='{task['task_id']}']")
    expect(row.locator("td[data-label=Due]")).to_have_text("2026-12-01 09:30")


def test_a_refused_action_lands_back_on_the_card_in_plain_words(
    server: Server, watched: Watched
) -> None:
    page = watched.page
    task = next(
        t for t in tab_json(server.db, "cust-1004", "tasks")["items"] if t["status"] == "pending"
    )
    page.goto(card(server, "cust-1004", "tab=tasks"))
    # Someone else completes it meanwhile; this page still offers Complete.
    done = run_ledger(
        "task", "complete", "cust-1004", task["task_id"], "--as", "u-1", db=server.db
    )
    assert done.returncode == 0, done.stderr
    page.locator(f"tr[data-task-id='{task['task_id']}'] button[data-action=complete]").click()
    expect(page.locator(".notice.error")).to_have_text("This task is already completed.")
    assert page.url == card(server, "cust-1004", "tab=tasks")
    assert "data.task_id" not in page.locator("main").inner_text()


def test_saving_an_edit_says_what_changed(server: Server, watched: Watched) -> None:
    page = watched.page
    task = next(
        t
        for t in tab_json(server.db, "cust-1005", "tasks")["items"]
        if t["status"] == "pending" and t["assignee_id"]
    )
    row = f"tr[data-task-id='{task['task_id']}']"
    page.goto(card(server, "cust-1005", "tab=tasks"))
    page.locator(f"{row} a", has_text="Edit").click()
    page.click("#edit-form button[type=submit]")
    expect(page.locator(".notice")).to_have_text(
        "Nothing to save: the task already had these values."
    )
    page.locator(f"{row} a", has_text="Edit").click()
    page.select_option("#edit-assignee", "")
    page.click("#edit-form button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Task saved: assignee removed.")
    expect(page.locator(f"{row} td[data-label=Assignee]")).to_have_text("—")


def _one_line(page: Page, selector: str) -> None:
    """Every element `selector` finds is one line high (not wrapped)."""
    boxes = page.locator(selector).evaluate_all(
        "els => els.map(e => [e.textContent, e.getClientRects().length,"
        " e.getBoundingClientRect().height,"
        " parseFloat(getComputedStyle(e).lineHeight) || 21])"
    )
    assert boxes, selector
    for text, rects, height, line in boxes:
        assert rects == 1 and height < 1.6 * line, f"{selector} {text!r} wraps: {height}px"


LONG = "Customer explained at length " + "that the parcel arrived damaged and " * 12 + "end."


def test_layout_at_1280_and_375_with_long_summaries(server: Server, browser: Browser) -> None:
    run = run_ledger("note", "add", "cust-1006", LONG, "--as", "u-1", db=server.db)
    assert run.returncode == 0, run.stderr
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(card(server, "cust-1006"))
        _one_line(page, "td[data-label=When] time")
        _one_line(page, "td[data-label=Kind] .kind")
        _one_line(page, ".count")
        for tab in ("tasks", "visits", "segments", "emails"):
            page.goto(card(server, "cust-1006", f"tab={tab}"))
            _one_line(page, "table.rows time")
        page.goto(card(server, "cust-1006", "tab=tasks"))
        page.locator("#add-task summary").click()
        page.fill("#task-title", "Send the replacement parcel")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "card-forms-desktop.png"))
        # docs/card-forms.png is a copy of this one.
        page.screenshot(
            path=str(ARTIFACTS / "card-forms.png"),
            clip={"x": 0, "y": 0, "width": 1280, "height": 560},
        )
    finally:
        context.close()
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        for tab in ("timeline", "tasks", "visits", "segments", "chats", "emails", "orders", "card"):
            page.goto(card(server, "cust-1006", f"tab={tab}"))
            page.locator("#add-note summary").click()
            page.locator("#add-task summary").click()
            scroll, client = no_horizontal_overflow(page)
            assert scroll <= client, f"{tab} at 375 px: {scroll}px wide in {client}px"
        page.goto(card(server, "cust-1006"))
        _one_line(page, "td[data-label=When] time")
        page.locator("#add-task summary").click()
        page.screenshot(path=str(ARTIFACTS / "card-forms-phone.png"), full_page=True)
    finally:
        context.close()
