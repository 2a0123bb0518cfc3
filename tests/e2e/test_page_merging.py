"""Merging customers on the card page: from the "Possible duplicates (N)" notice to
the list, the list's "Review merge" link to the preview (both by name, the card
it leads to, a choice for each differing field, what moves, the confirmation
for customers sharing no contact), the merge (the absorbed customer's tasks on
the priority's card, the absorbed card's address leading there) and its undo,
in a real Chromium against a real `ledger serve` holding the demo data and a
web-shop customer with Ben Okafor's e-mail address in other letters."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.factories import event
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

SAME_PERSON = "They are the same person"


def add_web_shop_customer(db: str) -> None:
    # cust-1002 (Ben Okafor) is "Ben.Okafor@Example.com": the web shop made this
    # one with the address in small letters, another phone and a task.
    append(
        db,
        [
            event(
                "customer.created",
                "web-88",
                {
                    "card": {
                        "name": "B. Okafor",
                        "email": "ben.okafor@example.com",
                        "phone": "+44 20 7946 0958",
                    }
                },
            ),
            event(
                "task.created",
                "web-88",
                {"task_id": "web-88-t1", "title": "Send the spare charger", "assignee_id": "u-1"},
            ),
        ],
    )


@contextmanager
def demo_with_web_shop(tmp: Path, keys: Sequence[Key] = ()) -> Iterator[Server]:
    """`ledger serve` on the demo data and the web shop's customer; open, or
    with an access file of `keys`."""
    db = f"sqlite:///{tmp / 'ledger.db'}"
    load_demo(db)
    add_web_shop_customer(db)
    access = write_access_file(tmp / "access.toml", list(keys)) if keys else None
    with ledger_server(db, tmp, access=access) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with demo_with_web_shop(tmp_path_factory.mktemp("merging")) as server:
        yield server


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(10_000)
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def task_titles(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("tr[data-task-id] td.title").all_inner_texts()]


def test_merging_a_duplicate_and_undoing_it(server: Server, watched: Watched) -> None:
    page = watched.page
    # Finding the duplicate: the card's notice, the list, its "Review merge" link.
    page.goto(server.url("/customers/cust-1002"))
    expect(page.locator("h1")).to_have_text("Ben Okafor")
    page.get_by_role("link", name=re.compile("^Tasks")).click()
    before = task_titles(page)
    assert before and "Send the spare charger" not in before
    page.locator("#duplicates-notice a").click()
    expect(page.locator("li.duplicate .duplicate-name")).to_have_text(["B. Okafor"])
    page.get_by_role("link", name="Review merge of B. Okafor into this card").click()
    assert page.url == server.url("/customers/cust-1002/merge?absorb=web-88")

    # The preview: who, the resulting card, the choices, what moves.
    expect(page.locator("h1")).to_have_text("Merge B. Okafor into Ben Okafor")
    expect(page.locator("#merge-summary")).to_have_text(
        "Ben Okafor (cust-1002) keeps their card; B. Okafor (web-88) is merged into it."
    )
    card = page.locator("#merged-card")
    expect(card.locator("dd[data-field=name]")).to_have_text("Ben Okafor")
    expect(card.locator("dd[data-field=phone]")).to_have_text("030 2345678")
    phone = page.get_by_role("group", name="Phone")
    expect(phone.get_by_role("radio", name="030 2345678 (Ben Okafor's)")).to_be_checked()
    expect(phone.get_by_role("radio", name="+44 20 7946 0958 (B. Okafor's)")).not_to_be_checked()
    # Both hold one e-mail address, written in different case: no choice to make,
    # and the card keeps the priority's notation.
    expect(page.get_by_role("group", name="E-mail")).to_have_count(0)
    expect(card.locator("dd[data-field=email]")).to_have_text("Ben.Okafor@Example.com")
    expect(page.locator("#moved")).to_contain_text(
        "B. Okafor's 2 timeline entries, 1 task and 3 card changes move to this card."
    )
    expect(page.locator("#confirmation-why")).to_have_count(0)  # they share an address
    expect(page.get_by_label(SAME_PERSON)).to_have_count(0)
    assert axe_violations(page) == []

    # Keeping the web shop's phone number: the preview shows it on the card.
    phone.get_by_role("radio", name="+44 20 7946 0958 (B. Okafor's)").check()
    page.get_by_role("button", name="Update preview").click()
    expect(card.locator("dd[data-field=phone]")).to_have_text("+44 20 7946 0958")
    expect(
        page.get_by_role("group", name="Phone").get_by_role("radio", name=re.compile("B. Okafor"))
    ).to_be_checked()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "merge-preview.png"), full_page=True)

    # The merge: back on Ben Okafor's card, which now holds B. Okafor's task.
    page.get_by_label("Why merge them?").fill("Same customer, ordered as a guest")
    page.get_by_role("button", name="Merge", exact=True).click()
    assert page.url == server.url("/customers/cust-1002")
    expect(page.locator(".notice[role=status]")).to_have_text("Merged B. Okafor into this card.")
    expect(page.locator("#customer-phone")).to_have_text("+44 20 7946 0958")
    # The card says what the preview said, the e-mail in the kept card's notation.
    expect(page.locator("#customer-email")).to_have_text("Ben.Okafor@Example.com")
    merged = page.locator("#merged-here li")
    expect(merged).to_have_count(1)
    expect(merged.locator("p").first).to_have_text(
        re.compile(r"^Merged here: B\. Okafor \(web-88\) \(since \d{1,2} [A-Z][a-z]{2} \d{4}\)$")
    )
    expect(page.locator("#duplicates-notice")).to_have_count(0)  # no longer each other's
    assert axe_violations(page) == []
    page.screenshot(path=str(ARTIFACTS / "merged-card.png"))
    page.get_by_role("link", name=re.compile("^Tasks")).click()
    assert "Send the spare charger" in task_titles(page)
    assert set(before) <= set(task_titles(page))

    # B. Okafor's own card leads to Ben Okafor's, saying why; a tab too.
    page.goto(server.url("/customers/web-88"))
    assert page.url == server.url("/customers/cust-1002")
    expect(page.locator(".notice[role=status]")).to_have_text(
        "B. Okafor (web-88) was merged into this card."
    )
    page.goto(server.url("/customers/web-88?tab=tasks"))
    assert page.url == server.url("/customers/cust-1002?tab=tasks")
    page.goto(server.url("/customers/web-88/duplicates"))
    assert page.url == server.url("/customers/cust-1002/duplicates")
    expect(page.locator("#no-duplicates")).to_have_text("No possible duplicates.")

    # The undo: each has their own card again, and they are duplicates again.
    page.goto(server.url("/customers/cust-1002"))
    undo = page.locator("#merged-here li[data-customer-id=web-88]")
    undo.get_by_role("button", name="Undo merge of B. Okafor").click()  # the reason is required
    assert page.url == server.url("/customers/cust-1002")
    expect(page.locator("#merged-here")).to_have_count(1)
    undo.get_by_label("Why undo it?").fill("Two people after all")
    undo.get_by_role("button", name="Undo merge of B. Okafor").click()
    notice = page.locator(".notice[role=status]")
    expect(notice).to_have_text(
        "Undid the merge: B. Okafor has their own card again. Open B. Okafor's card"
    )
    expect(page.locator("#merged-here")).to_have_count(0)
    expect(page.locator("#customer-phone")).to_have_text("030 2345678")
    expect(page.locator("#duplicates-notice a")).to_have_text("Possible duplicates (1)")
    notice.get_by_role("link", name="Open B. Okafor's card").click()
    assert page.url == server.url("/customers/web-88")
    expect(page.locator("h1")).to_have_text("B. Okafor")
    page.get_by_role("link", name=re.compile("^Tasks")).click()
    assert task_titles(page) == ["Send the spare charger"]
    page.goto(server.url("/customers/cust-1002?tab=tasks"))
    assert task_titles(page) == before
    assert watched.errors == []


def test_customers_sharing_no_contact_need_a_confirmation(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(server.url("/customers/cust-1004/merge?absorb=cust-1005"))
    expect(page.locator("h1")).to_have_text("Merge Emma Schulz into Diego Alvarez")
    expect(page.locator("#confirmation-why")).to_have_text(
        "Emma Schulz and Diego Alvarez share no phone number or e-mail address. "
        "Merge them only if they are the same person."
    )
    expect(page.get_by_label(SAME_PERSON)).not_to_be_checked()
    expect(page.get_by_role("group", name="Name")).to_be_visible()
    assert axe_violations(page) == []
    # Sent without the tick (the browser asks for it first; a stale form need
    # not): back on the preview with the sentence, nothing merged.
    page.get_by_label("Why merge them?").fill("Married, new name")
    page.get_by_label(SAME_PERSON).evaluate("box => box.removeAttribute('required')")
    page.get_by_role("button", name="Merge", exact=True).click()
    assert page.url == server.url("/customers/cust-1004/merge?absorb=cust-1005")
    expect(page.locator(".notice[role=alert]")).to_have_text(
        'They share no phone number or e-mail address: tick "They are the same person" '
        "to merge anyway."
    )
    page.get_by_label(SAME_PERSON).check()
    page.get_by_label("Why merge them?").fill("Married, new name")
    page.get_by_role("button", name="Merge", exact=True).click()
    expect(page.locator(".notice[role=status]")).to_have_text("Merged Emma Schulz into this card.")
    # A merged customer cannot be merged again: said as a sentence, no form.
    page.goto(server.url("/customers/cust-1003/merge?absorb=cust-1005"))
    expect(page.locator(".notice[role=alert]")).to_have_text(
        "Emma Schulz is already merged into another card."
    )
    expect(page.locator("#merge-form")).to_have_count(0)
    expect(page.get_by_role("link", name="Back to Chloe Martin's card")).to_be_visible()
    assert axe_violations(page) == []
    # Cancel leads back to the card.
    page.goto(server.url("/customers/cust-1003/merge?absorb=cust-1006"))
    page.get_by_role("link", name="Cancel").click()
    assert page.url == server.url("/customers/cust-1003")
    # The refused preview's status (409) is the one console line.
    assert watched.errors == [
        "Failed to load resource: the server responded with a status of 409 (Conflict)"
    ]


def test_merge_and_undo_posts_need_the_pages_token(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(server.url("/customers/cust-1006/merge?absorb=cust-1001"))
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    assert token
    form = {"absorb": "cust-1001", "reason": "test", "confirm": "yes", "action": "merge"}
    for path in ("/customers/cust-1006/merge", "/customers/cust-1006/unmerge"):
        answer = page.request.post(server.url(path), form={**form, "customer_id": "cust-1001"})
        assert answer.status == 403
        assert "did not come from this page" in answer.text()
        forged = page.request.post(
            server.url(path),
            form={**form, "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert forged.status == 403
    page.goto(server.url("/customers/cust-1006"))
    expect(page.locator("#merged-here")).to_have_count(0)
    page.goto(server.url("/customers/cust-1001"))
    expect(page.locator("h1")).to_have_text("Anna Petrova")  # not merged away


# Merging is the scope `merge`, on the page as in the API; task actions are `tasks`.
AGENT = Key("agent", "agent-token-1", ("read", "tasks"), "u-7")
MERGER = Key("merger", "merger-token-2", ("read", "merge"), "u-5")
NOT_MERGING = "Your access key may read these cards but not merge them."


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with demo_with_web_shop(tmp_path_factory.mktemp("merging-secured"), [AGENT, MERGER]) as server:
        yield server


def signed_in(browser: Browser, server: Server, key: Key) -> tuple[Watched, Page]:
    watched = Watched(browser.new_context(viewport=DESKTOP).new_page())
    page = watched.page
    page.goto(server.url("/signin"))
    page.fill("#key", key.token)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Customers")
    return watched, page


def test_a_key_for_task_actions_alone_does_not_merge(
    secured_server: Server, browser: Browser
) -> None:
    watched, page = signed_in(browser, secured_server, AGENT)
    try:
        page.goto(secured_server.url("/customers/cust-1002/duplicates"))
        expect(page.locator("li.duplicate[data-customer-id=web-88]")).to_be_visible()
        expect(page.locator(".review-merge")).to_have_count(0)
        expect(page.locator("details.not-duplicate")).to_have_count(0)
        page.goto(secured_server.url("/customers/cust-1002/merge?absorb=web-88"))
        expect(page.get_by_text(NOT_MERGING)).to_be_visible()
        expect(page.locator("#merge-form")).to_have_count(0)
        # A form posted all the same, with the page's own token: refused in a
        # sentence, and nothing stored.
        token = page.locator("input[name=csrf]").first.get_attribute("value")
        assert token
        for path, form in (
            ("merge", {"absorb": "web-88", "reason": "same", "confirm": "yes"}),
            ("not-duplicates", {"other": "web-88", "reason": "two people"}),
            ("unmerge", {"customer_id": "web-88", "reason": "two people"}),
        ):
            answer = page.request.post(
                secured_server.url(f"/customers/cust-1002/{path}"), form={**form, "csrf": token}
            )
            assert NOT_MERGING in answer.text(), path  # the page it lands on says why
        page.goto(secured_server.url("/customers/cust-1002"))
        expect(page.locator("#merged-here")).to_have_count(0)
        kinds = {i["type"] for i in tab_json(secured_server.db, "cust-1002", "timeline")["items"]}
        assert not kinds & {"customer.merged", "customer.not_duplicate"}
        assert watched.errors == []
    finally:
        page.context.close()


def test_a_key_with_the_merge_scope_merges_without_the_tasks_scope(
    secured_server: Server, browser: Browser
) -> None:
    watched, page = signed_in(browser, secured_server, MERGER)
    try:
        page.goto(secured_server.url("/customers/cust-1002/duplicates"))
        page.locator(".review-merge").first.click()
        expect(page.locator("#merge-form")).to_be_visible()
        page.fill("#merge-reason", "the web shop's copy")
        page.click("#merge-button")
        expect(page.locator(".notice").first).to_have_text("Merged B. Okafor into this card.")
        newest = tab_json(secured_server.db, "cust-1002", "timeline", "--limit", "2")["items"]
        merged = {i["type"]: i for i in newest}["customer.merged"]
        assert merged["actor"]["id"] == "u-5"  # the key's own user
        # Task actions stay `tasks`: this key reads the tasks but changes none.
        page.goto(secured_server.url("/customers/cust-1002?tab=tasks"))
        expect(page.locator("button[data-action=complete]")).to_have_count(0)
        assert watched.errors == []
    finally:
        page.context.close()


def test_the_preview_fits_a_phone(server: Server, browser: Browser) -> None:
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        page.goto(server.url("/customers/cust-1001/merge?absorb=cust-1003"))
        expect(page.locator("h1")).to_have_text("Merge Chloe Martin into Anna Petrova")
        width, viewport = no_horizontal_overflow(page)
        assert width <= viewport
        page.screenshot(path=str(ARTIFACTS / "merge-preview-phone.png"), full_page=True)
    finally:
        context.close()
