"""The card page's counts and first rows: `tab_counts` counts exactly the items
each tab lists, and a tab's `limit` keeps its newest items, on both stores."""

from __future__ import annotations

import pytest

from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.demo import DEMO_CUSTOMERS
from projections.paging import MAX_LIMIT, Page
from projections.tabs import TABS, TabRequest, read_tab, tab_counts
from projections.timeline import TimelineQuery
from services.tabs import card_header
from tests.cli_runner import run_ledger


@pytest.fixture
def demo_url(store_url: str) -> str:
    result = run_ledger("demo", db=store_url, timeout=120)
    assert result.returncode == 0, result.stderr
    return store_url


def _everything(conn: Connection, customer: str, tab: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        query = TimelineQuery(limit=MAX_LIMIT, cursor=cursor if tab == "timeline" else None)
        page = Page(MAX_LIMIT, cursor if tab != "timeline" else None)
        answer = read_tab(conn, TabRequest(customer, tab, timeline=query, page=page))
        items += answer["items"]
        cursor = answer["next_cursor"]
        if cursor is None:
            return items


def test_counts_and_limits_match_the_tabs(demo_url: str) -> None:
    with Connection(parse_database_url(demo_url)) as conn:
        header = card_header(conn, DEMO_CUSTOMERS[1][0])  # brings every read model up to date
        assert header.name == DEMO_CUSTOMERS[1][1]
        emails = read_tab(conn, TabRequest(DEMO_CUSTOMERS[1][0], "emails"))
        assert header.last_email is not None
        assert header.last_email.model_dump() == emails["last_email"]
        for customer, _, _ in DEMO_CUSTOMERS:
            counts = tab_counts(conn, customer)
            for tab in TABS:
                items = _everything(conn, customer, tab)
                assert counts[tab] == len(items), (customer, tab)
                if tab != "timeline":
                    newest = read_tab(conn, TabRequest(customer, tab, page=Page(limit=2)))["items"]
                    assert newest == items[:2], (customer, tab)
        capped = tab_counts(conn, DEMO_CUSTOMERS[0][0], cap=5)
        exact = tab_counts(conn, DEMO_CUSTOMERS[0][0])
        assert all(capped[t] == min(exact[t], 6) for t in TABS)
        assert tab_counts(conn, "nobody") == dict.fromkeys(TABS, 0)
