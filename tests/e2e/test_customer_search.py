"""Finding a customer on every door: the API and the CLI give one answer, and the
page lists the results, each opening its card (Chromium, at 1280 and 375 px)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.cli_runner import ledger_cli
from tests.factories import append_to_url, event
from tests.http_support import make_keys, serve_in_thread
from tests.page_support import (
    DESKTOP,
    PHONE,
    Server,
    Watched,
    append,
    ledger_server,
    load_demo,
    no_horizontal_overflow,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
QUERIES = (
    "anna",
    "ANNA schmidt",
    "030 1234567",
    "+49 (30) 123-4567",
    "A.S@EXAMPLE.com",
    "c-2",
    "nobody",
    "",
)


def test_the_api_answers_what_the_cli_answers(store_url: str, tmp_path: Path) -> None:
    append_to_url(
        store_url,
        [
            event(
                "customer.created",
                "c-1",
                {
                    "card": {
                        "name": "Anna Schmidt",
                        "phone": "+49 30 1234567",
                        "email": "a.s@example.com",
                    }
                },
            ),
            event("customer.created", "c-2", {"card": {"name": "Anna <b>Lee</b>"}}),
            event("customer.created", "c-3", {"card": {"name": "Ben Okafor"}}),
        ],
    )
    keys = make_keys(tmp_path)
    with serve_in_thread(store_url, access=keys.access()) as client:
        for query in QUERIES:
            api = client.get("/v1/customers", params={"q": query}, headers=keys.auth("reader"))
            assert api.status_code == 200, api.text
            cli = ledger_cli("customers", "find", query, "--format", "json", db=store_url)
            assert cli.returncode == 0, cli.stderr
            assert api.json() == json.loads(cli.stdout), query
        assert [
            i["customer_id"]
            for i in client.get(
                "/v1/customers", params={"q": "anna"}, headers=keys.auth("reader")
            ).json()["items"]
        ] == ["c-1", "c-2"]
        paged = client.get(
            "/v1/customers", params={"q": "anna", "limit": 1}, headers=keys.auth("reader")
        ).json()
        assert paged["limit"] == 1 and paged["next_cursor"]
        rest = client.get(
            "/v1/customers",
            params={"q": "anna", "cursor": paged["next_cursor"]},
            headers=keys.auth("reader"),
        ).json()
        assert [i["customer_id"] for i in rest["items"]] == ["c-2"]
        bad = client.get(
            "/v1/customers",
            params={"q": "ben", "cursor": paged["next_cursor"]},
            headers=keys.auth("reader"),
        )
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert client.get("/v1/customers", params={"q": "anna"}).status_code == 401
        denied = client.get("/v1/customers", params={"q": "anna"}, headers=keys.auth("ingest"))
        assert denied.status_code == 403


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("search")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    load_demo(db)
    append(
        db,
        [
            event(
                "customer.created",
                "cust-2001",
                {
                    "card": {
                        "name": "Anna Schmidt",
                        "phone": "030 7654321",
                        "email": "anna.schmidt@example.com",
                    }
                },
            ),
            event(
                "customer.created",
                "cust-2002",
                {"card": {"name": "Anna-Lena <i>Wolff</i> von Hohenzollern-Sigmaringen"}},
            ),
        ],
    )
    with ledger_server(db, tmp) as running:
        yield running


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_searching_lists_the_customers_and_a_result_opens_its_card(
    server: Server, browser: Browser, size: str, viewport: dict[str, int]
) -> None:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(10_000)
    try:
        watched = Watched(context.new_page())
        page = watched.page
        page.goto(server.url("/customers"))
        box = page.get_by_label("Name, phone, e-mail or customer id")
        box.fill("anna")
        box.press("Enter")
        results = page.locator("ul.results li")
        expect(results).to_have_count(3)
        expect(page.locator("#search-result")).to_have_text("3 customers found.")
        texts = results.all_inner_texts()
        assert "Anna Petrova" in texts[0] and "cust-1001" in texts[0]
        assert "found by name" in texts[0]
        assert "Anna-Lena <i>Wolff</i>" in texts[2]  # shown as text, never markup
        assert page.locator("ul.results i").count() == 0
        scroll, client = no_horizontal_overflow(page)
        assert scroll <= client, f"{scroll}px wide in a {client}px window"
        if size == "desktop":
            page.screenshot(path=str(DOCS / "customer-search.png"))
        results.nth(1).get_by_role("link").click()
        expect(page.locator("#customer-name")).to_have_text("Anna Schmidt")
        assert page.url == server.url("/customers/cust-2001")

        page.goto(server.url("/customers"))
        box = page.get_by_label("Name, phone, e-mail or customer id")
        box.fill("+49 30 765 43 21")
        box.press("Enter")
        expect(page.locator("ul.results li")).to_have_count(1)
        expect(page.locator("ul.results li")).to_contain_text("found by phone")

        box = page.get_by_label("Name, phone, e-mail or customer id")
        box.fill("cust-1002")  # an exact id alone opens the card
        box.press("Enter")
        expect(page.locator("#customer-name")).to_be_visible()
        assert page.url == server.url("/customers/cust-1002")

        page.goto(server.url("/customers?q=nobody+at+all"))
        expect(page.locator("#search-result")).to_have_text("No customer found for nobody at all.")
        assert watched.errors == [] and watched.dialogs == []
    finally:
        context.close()
