"""The card page's pure parts: sessions and CSRF tokens, links, text, edits.
(The page itself is tested in a real browser: tests/e2e/test_page.py.)"""

from __future__ import annotations

import pytest

from api.page_common import local_target as _local_target
from api.page_session import SESSION_MAX_AGE, SessionSigner
from api.page_time import BadFormValue, Clock, UnknownZone, zone
from api.page_view import (
    KIND_ITEM_LABELS,
    KIND_LABELS,
    CardPage,
    View,
    Viewer,
    change_value,
    edit_changes,
    plain_text,
    render_card,
    safe_link,
)
from ledger.kinds import KINDS


def test_a_session_survives_the_round_trip_and_nothing_else_does() -> None:
    signer = SessionSigner(b"secret")
    session = signer.new("maria", None)
    cookie = signer.dump(session)
    assert signer.load(cookie) == session
    body, signature = cookie.split(".")
    assert signer.load(f"{body}x.{signature}") is None  # tampered body
    other = "B" if signature[0] == "A" else "A"
    assert signer.load(f"{body}.{other}{signature[1:]}") is None  # tampered signature
    assert SessionSigner(b"other").load(cookie) is None  # another server's secret
    assert signer.load(cookie, now=session.issued + SESSION_MAX_AGE + 1) is None  # expired
    assert signer.load("") is None and signer.load("a.b.c") is None


def test_csrf_tokens_belong_to_their_session() -> None:
    signer = SessionSigner(b"secret")
    one, two = signer.new(), signer.new()
    assert signer.csrf_ok(one, signer.csrf(one))
    assert not signer.csrf_ok(two, signer.csrf(one))
    assert not signer.csrf_ok(one, None) and not signer.csrf_ok(None, signer.csrf(one))
    # The token is not the cookie's signature (separate derived keys).
    assert signer.csrf(one) not in signer.dump(one)


@pytest.mark.parametrize(
    ("url", "link"),
    [
        ("https://crm.example.com/chats/1", "https://crm.example.com/chats/1"),
        ("http://x.test/a?b=1", "http://x.test/a?b=1"),
        ("javascript:alert(1)", None),
        (" JavaScript:alert(1)", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("/relative", None),
        (None, None),
    ],
)
def test_only_http_urls_become_links(url: str | None, link: str | None) -> None:
    assert safe_link(url) == link


def test_printable_drops_control_and_bidi_characters() -> None:
    assert plain_text("a\x1b[31mb\u202ec\nd\te") == "a[31mbc d e"
    assert plain_text(None) == ""


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/customers/c-1?tab=tasks", "/customers/c-1?tab=tasks"),
        ("//evil.example/x", "/customers"),
        ("https://evil.example/", "/customers"),
        ("/\\evil.example", "/customers"),
        (None, "/customers"),
    ],
)
def test_sign_in_only_returns_to_this_server(target: str | None, expected: str) -> None:
    assert _local_target(target) == expected


def test_view_urls_keep_only_what_differs_from_the_defaults() -> None:
    view = View("cust 1/2", "timeline", "Europe/Berlin", ("emails", "calls"), "CURSOR")
    assert view.url() == (
        "/customers/cust%201%2F2?tz=Europe%2FBerlin&kind=emails&kind=calls&cursor=CURSOR"
    )
    assert view.url(tab="tasks") == "/customers/cust%201%2F2?tab=tasks&tz=Europe%2FBerlin"
    assert View("c").url() == "/customers/c"


def test_zones() -> None:
    assert zone(None)[0] == "UTC" and zone("utc")[0] == "UTC"
    assert zone("Europe/Berlin")[0] == "Europe/Berlin"
    with pytest.raises(UnknownZone):
        zone("Mars/Olympus")
    with pytest.raises(UnknownZone):
        zone("../../etc/passwd")


def test_edit_sends_only_the_changed_fields_in_utc_terms() -> None:
    name, tz = zone("Europe/Berlin")
    clock = Clock(name, tz)
    task = {"title": "Call", "assignee_id": "u-1", "due_at": "2026-10-01T08:00:30Z"}
    same = {"title": "Call", "assignee_id": "u-1", "due_at": "2026-10-01T10:00"}
    assert edit_changes(task, same, clock) == []
    moved = {"title": "Call back", "assignee_id": "", "due_at": "2026-10-02T09:15"}
    assert edit_changes(task, moved, clock) == [
        {"field": "title", "new": "Call back"},
        {"field": "assignee_id", "new": None},
        {"field": "due_at", "new": "2026-10-02T09:15:00+02:00"},
    ]
    with pytest.raises(BadFormValue):
        edit_changes(task, {**same, "due_at": "tomorrow"}, clock)


def _page(view: View, shown: int, total: int, next_cursor: str | None = None) -> CardPage:
    items = [{"visit_id": f"v{i}"} for i in range(shown)]
    return CardPage(
        view=view,
        viewer=Viewer(None, False, False, "csrf"),
        clock=Clock(*zone(None)),
        name=None,
        last_email=None,
        counts={"visits": total, "timeline": 10_001},
        count_cap=10_000,
        answer={"items": items, "next_cursor": next_cursor},
    )


def test_every_tab_links_its_older_page_and_back_to_the_newest() -> None:
    first = _page(View("c", "visits"), 100, 250, next_cursor="CUR")
    assert first.older_url == "/customers/c?tab=visits&cursor=CUR"
    assert first.newest_url is None
    second = _page(View("c", "visits", cursor="CUR"), 100, 250, next_cursor=None)
    assert second.older_url is None
    assert second.newest_url == "/customers/c?tab=visits"
    # Another tab's link starts at that tab's newest page.
    assert {t.name: t.href for t in second.tabs}["orders"] == "/customers/c?tab=orders"
    tabs = {t.name: t.count for t in first.tabs}
    assert tabs["visits"] == "250" and tabs["timeline"] == "10,000+"


def test_every_timeline_kind_has_its_words_on_the_page() -> None:
    assert list(KIND_LABELS) == list(KINDS) and list(KIND_ITEM_LABELS) == list(KINDS)
    assert (KIND_LABELS["sms"], KIND_ITEM_LABELS["emails"]) == ("SMS", "Email")


def test_a_changed_time_shows_in_the_viewers_zone() -> None:
    berlin = Clock(*zone("Europe/Berlin"))
    assert change_value("next_call_at", "2026-10-02T07:30:00Z", berlin) == "2026-10-02 09:30"
    assert change_value("next_call_at", "2026-10-02T07:30:00Z") == "2026-10-02 07:30 UTC"
    assert change_value("note", "2026-10-02 is a Friday", berlin) == "2026-10-02 is a Friday"
    change = {
        "field": "next_call_at",
        "old": None,
        "new": "2026-10-02T07:30:00Z",
        "occurred_at": "2026-10-01T10:00:00Z",
        "actor": {"kind": "user", "id": "u-1", "name": "Maria"},
    }
    page = CardPage(
        view=View("c", "card", "Europe/Berlin"),
        viewer=Viewer(None, False, False, "csrf"),
        clock=berlin,
        name=None,
        last_email=None,
        counts={"card": 1, "timeline": 1},
        count_cap=10_000,
        answer={"items": [change], "next_cursor": None},
    )
    html = render_card(page)
    assert '<td data-label="New">2026-10-02 09:30</td>' in html
