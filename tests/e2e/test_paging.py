"""Every list tab pages: `limit`, an opaque cursor, `next_cursor` null on the last
page, newest first with a stable tie-break; `memberships` and `last_email` whole."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from projections import registry
from projections.paging import MAX_LIMIT, BadCursor, Page
from projections.runner import catch_up_live
from projections.schema import ensure_schema
from projections.tabs import TABS, TabRequest, check_cursor, read_tab
from tests.cli_runner import run_ledger
from tests.factories import append_ok, event
from tests.http_support import serve_in_thread

# Every event at one of two instants: ties on the time are the rule, so only the
# position (and the change's seq) keeps the order stable.
TIMES = ("2026-10-01T10:00:00Z", "2026-10-02T10:00:00Z")
N = 7


def _events(customer: str) -> list[dict[str, Any]]:
    def e(event_type: str, data: dict[str, Any], i: int) -> dict[str, Any]:
        return event(event_type, customer, data, occurred_at=TIMES[i % 2])

    out = [event("customer.created", customer, {"card": {"name": "Ann"}}, occurred_at=TIMES[0])]
    p = "" if customer == "c1" else f"{customer}-"  # entity ids are global
    for i in range(N):
        out += [
            e("task.created", {"task_id": f"{p}t{i}", "title": f"T{i}"}, i),
            e(
                "visit.recorded",
                {"visit_id": f"{p}v{i}", "source": "web", "channel": "direct", "duration_s": i},
                i,
            ),
            e("segment.joined", {"segment_id": f"{p}s{i}"}, i),
            e("chat.started", {"dialog_id": f"{p}d{i}", "channel": "website"}, i),
            e("email.sent", {"message_id": f"{p}e{i}", "subject": "S"}, i),
            e(
                "order.created",
                {"order_id": f"{p}o{i}", "status": "new", "total": "1.00", "currency": "EUR"},
                i,
            ),
            # Three changes in one event: a page may end inside it.
            e(
                "customer.card_changed",
                {
                    "changes": [
                        {"field": "name", "old": f"A{i}", "new": f"B{i}"},
                        {"field": "email", "old": None, "new": f"{i}@x"},
                        {"field": "phone", "old": None, "new": f"+{i}"},
                    ]
                },
                i,
            ),
        ]
    # The newest email (by time, then position) is opened: last_email says so on every page.
    out.append(e("email.opened", {"message_id": f"{p}e5"}, 1))
    return out


@pytest.fixture
def url(store_url: str) -> str:
    app = LedgerApplication(parse_database_url(store_url), create_tables=True)
    try:
        append_ok(app, _events("c1") + _events("c2"))
    finally:
        app.close()
    with Connection(parse_database_url(store_url)) as conn:
        ensure_schema(conn)
        catch_up_live(conn, [registry.get(name) for name in registry.NAMES])
    return store_url


def _read(url: str, tab: str, page: Page, customer: str = "c1") -> dict[str, Any]:
    with Connection(parse_database_url(url)) as conn:
        return read_tab(conn, TabRequest(customer, tab, page=page))


def _all_pages(url: str, tab: str, limit: int) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        answer = _read(url, tab, Page(limit, cursor))
        pages.append(answer)
        cursor = answer["next_cursor"]
        if cursor is None:
            return pages


@pytest.mark.parametrize("tab", [t for t in TABS if t != "timeline"])
def test_pages_cover_the_whole_tab_once_in_order(url: str, tab: str) -> None:
    whole = _read(url, tab, Page(MAX_LIMIT))
    assert whole["next_cursor"] is None
    assert len(whole["items"]) >= N
    for limit in (1, 2, 3):
        pages = _all_pages(url, tab, limit)
        assert all(len(p["items"]) == limit for p in pages[:-1])
        assert 1 <= len(pages[-1]["items"]) <= limit
        assert [i for p in pages for i in p["items"]] == whole["items"], limit
    # A page exactly as long as what is left is the last one.
    exact = _read(url, tab, Page(len(whole["items"])))
    assert exact["next_cursor"] is None and exact["items"] == whole["items"]


def test_newest_first_with_the_position_breaking_ties(url: str) -> None:
    # Odd items happened a day later; within a day, the later-stored first.
    visits = [i["visit_id"] for i in _read(url, "visits", Page(MAX_LIMIT))["items"]]
    assert visits == ["v5", "v3", "v1", "v6", "v4", "v2", "v0"]
    card = _read(url, "card", Page(MAX_LIMIT))["items"]
    # One event's changes stay in the order it lists them.
    assert [c["field"] for c in card[:3]] == ["name", "email", "phone"]
    assert card[0]["new"] == "B5"


def test_default_limit_is_100_and_the_maximum_1000() -> None:
    assert Page().limit == 100
    for bad in (0, MAX_LIMIT + 1):
        with pytest.raises(ValueError, match="between 1 and 1000"):
            Page(bad)


def test_memberships_and_last_email_stay_whole(url: str) -> None:
    segments = _all_pages(url, "segments", 2)
    assert len(segments) > 1
    assert all(p["memberships"] == [f"s{i}" for i in range(N)] for p in segments)
    emails = _all_pages(url, "emails", 2)
    assert len(emails) > 1
    assert all(p["last_email"] == {"message_id": "e5", "opened": True} for p in emails)


def test_a_cursor_works_only_for_its_customer_and_tab(url: str) -> None:
    cursor = _read(url, "visits", Page(2))["next_cursor"]
    assert cursor is not None
    check_cursor("visits", "c1", cursor)
    with pytest.raises(BadCursor, match="another"):
        check_cursor("visits", "c2", cursor)
    with pytest.raises(BadCursor, match="another"):
        check_cursor("chats", "c1", cursor)
    with pytest.raises(BadCursor, match="not a cursor"):
        check_cursor("card", "c1", cursor)  # another width of key
    for garbage in ("abc", "!!", "W10", cursor[:-2]):
        with pytest.raises(BadCursor, match="not a cursor"):
            _read(url, "visits", Page(2, garbage))


def test_cli_prints_the_first_page_and_the_command_for_the_next(url: str) -> None:
    first = run_ledger("tab", "c1", "orders", "--limit", "4", db=url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "c1: orders (4 items)"
    command = shlex.split(lines[-1].removeprefix("more: "))
    assert command[:-1] == ["ledger", "tab", "c1", "orders", "--limit", "4", "--cursor"]
    second = run_ledger(*command[1:], "--format", "json", db=url)
    assert second.returncode == 0, second.stderr
    whole = _read(url, "orders", Page(MAX_LIMIT))["items"]
    assert json.loads(second.stdout)["items"] == whole[4:8]
    last = run_ledger("tab", "c1", "orders", "--limit", str(len(whole)), db=url)
    assert "more:" not in last.stdout
    wrong = run_ledger("tab", "c2", "orders", "--cursor", command[-1], db=url)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error: bad cursor: it belongs to another")


def test_http_pages_with_limit_and_cursor(url: str) -> None:
    with serve_in_thread(url) as client:
        path = "/v1/customers/c1/tabs/chats"
        first = client.get(path, params={"limit": "3"})
        assert first.status_code == 200, first.text
        items = first.json()["items"]
        cursor = first.json()["next_cursor"]
        while cursor is not None:
            page = client.get(path, params={"limit": "3", "cursor": cursor})
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            cursor = page.json()["next_cursor"]
        assert items == _read(url, "chats", Page(MAX_LIMIT))["items"]
        assert client.get(path, params={"limit": "1001"}).status_code == 422
        bad = client.get(path, params={"cursor": first.json()["next_cursor"][:-3]})
        assert bad.status_code == 400 and "bad cursor" in bad.text
