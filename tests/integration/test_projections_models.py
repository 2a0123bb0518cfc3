"""What each tab answers, on both stores: the spec's fields and values, orders,
pagination and filters, and the same rows whatever the batch size."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.events import EVENT_TYPES
from ledger.rights import RightsPolicy
from projections import rebuild as replay
from projections.paging import BadCursor
from projections.registry import PROJECTIONS, get
from projections.runner import Runner, catch_up_live
from projections.tabs import TabRequest, read_tab
from projections.targets import Target
from projections.timeline import TimelineQuery
from tests.factories import append_ok as append
from tests.factories import event
from tests.projection_support import dump, history
from tests.projection_support import positions as tracked_positions

MARIA = {"kind": "user", "id": "u-1", "name": "Maria"}
BOT = {"kind": "system", "id": "crm"}


def _e(event_type: str, data: dict[str, Any], at: str, actor: dict[str, Any] = MARIA) -> Any:
    return event(event_type, "c1", data, occurred_at=at, actor=actor)


SCRIPT = [
    _e("customer.created", {"card": {"name": "Ann", "email": "a@x"}}, "2026-10-01T06:00:00Z"),
    # 07:00Z, although its text sorts after the next event's: order is by instant.
    _e(
        "customer.card_changed",
        {"changes": [{"field": "email", "old": "a@x", "new": "b@x"}]},
        "2026-10-01T09:00:00+02:00",
    ),
    _e(
        "order.created",
        {"order_id": "o1", "status": "new", "total": "10.00", "currency": "EUR"},
        "2026-10-01T08:00:00Z",
    ),
    _e(
        "order.changed",
        {
            "order_id": "o1",
            "changes": [
                {"field": "status", "old": "new", "new": "paid"},
                {"field": "total", "old": "10.00", "new": "9.00"},
            ],
        },
        "2026-10-01T09:00:00Z",
    ),
    _e("segment.joined", {"segment_id": "vip", "segment_name": "VIP"}, "2026-10-01T09:10:00Z", BOT),
    _e("segment.joined", {"segment_id": "news"}, "2026-10-01T09:20:00Z", BOT),
    _e("segment.left", {"segment_id": "vip", "segment_name": "VIP"}, "2026-10-01T09:30:00Z", BOT),
    _e("email.sent", {"message_id": "e1", "subject": "Hi"}, "2026-10-01T10:00:00Z"),
    _e("email.delivered", {"message_id": "e1"}, "2026-10-01T10:01:00Z"),
    _e("email.opened", {"message_id": "e1"}, "2026-10-01T12:00:00Z"),
    # Arrives later but happened earlier: it is the first open.
    _e("email.opened", {"message_id": "e1"}, "2026-10-01T11:00:00Z"),
    _e("email.clicked", {"message_id": "e1", "url": "https://x/"}, "2026-10-01T12:05:00Z"),
    _e("email.sent", {"message_id": "e2", "subject": "Sale"}, "2026-10-02T10:00:00Z"),
    _e("email.bounced", {"message_id": "e2", "reason": "mailbox full"}, "2026-10-02T10:00:05Z"),
    _e(
        "chat.started",
        {"dialog_id": "d1", "channel": "whatsapp", "url": "https://chat/d1"},
        "2026-10-01T13:00:00Z",
    ),
    _e(
        "chat.message",
        {"dialog_id": "d1", "message_id": "m1", "direction": "inbound"},
        "2026-10-01T13:01:00Z",
    ),
    _e(
        "chat.message",
        {"dialog_id": "d1", "message_id": "m2", "direction": "outbound", "text": "Hello!"},
        "2026-10-01T13:02:00Z",
    ),
    _e("chat.status_changed", {"dialog_id": "d1", "status": "waiting"}, "2026-10-01T13:03:00Z"),
    _e("chat.started", {"dialog_id": "d2", "channel": "website"}, "2026-10-02T08:00:00Z"),
    _e(
        "task.created",
        {"task_id": "t1", "title": "Call", "due_at": "2026-10-05T09:00:00+02:00"},
        "2026-10-01T14:00:00Z",
    ),
    _e(
        "task.created",
        {"task_id": "t2", "title": "Send offer", "assignee_id": "u-2"},
        "2026-10-01T14:10:00Z",
    ),
    _e(
        "task.edited",
        {"task_id": "t1", "changes": [{"field": "title", "old": "Call", "new": "Call back"}]},
        "2026-10-01T14:20:00Z",
    ),
    _e("task.completed", {"task_id": "t2"}, "2026-10-01T14:30:00Z"),
    _e("task.created", {"task_id": "t3", "title": "Oops"}, "2026-10-01T14:40:00Z"),
    _e("task.deleted", {"task_id": "t3"}, "2026-10-01T14:50:00Z"),
    _e(
        "visit.recorded",
        {
            "visit_id": "v1",
            "site": "shop",
            "source": "google",
            "channel": "search",
            "duration_s": 120,
            "pages_viewed": 4,
            "landing_page": "https://shop/",
            "utm": {"source": "google", "medium": "cpc", "term": None},
        },
        "2026-10-01T15:00:00Z",
        {"kind": "integration", "id": "ga"},
    ),
    _e(
        "visit.recorded",
        {"visit_id": "v2", "source": "(direct)", "channel": "direct", "duration_s": 5},
        "2026-10-01T05:00:00Z",
        {"kind": "integration", "id": "ga"},
    ),
    _e("note.added", {"note_id": "n1", "text": "Prefers mornings"}, "2026-10-01T16:00:00Z"),
    _e(
        "call.logged",
        {"call_id": "k1", "direction": "outbound", "result": "missed", "duration_s": 0},
        "2026-10-01T16:10:00Z",
    ),
    _e("sms.sent", {"message_id": "s1", "text": "Hi"}, "2026-10-01T16:20:00Z"),
    _e(
        "file.attached",
        {"file_id": "f1", "name": "a.pdf", "size_bytes": 10},
        "2026-10-01T16:30:00Z",
    ),
]


def tab(app: LedgerApplication, name: str, **kw: Any) -> dict[str, Any]:
    with Connection(app.url) as conn:
        replay_ready(conn)
        catch_up_live(conn, [get(name)])
        return read_tab(conn, TabRequest(customer_id=kw.pop("customer", "c1"), tab=name, **kw))


def replay_ready(conn: Connection) -> None:
    from projections.schema import ensure_schema

    ensure_schema(conn)


@pytest.fixture
def scripted(app: LedgerApplication) -> LedgerApplication:
    append(app, SCRIPT)
    append(app, [event("customer.created", "c2", {"card": {"name": "Bob"}})])
    return app


def test_timeline_lists_every_event_newest_first_with_spec_fields(
    scripted: LedgerApplication,
) -> None:
    answer = tab(scripted, "timeline", timeline=TimelineQuery(limit=1000))
    assert answer.keys() == {"customer_id", "tab", "items", "next_cursor"}
    assert (answer["customer_id"], answer["tab"], answer["next_cursor"]) == ("c1", "timeline", None)
    items = answer["items"]
    assert len(items) == len(SCRIPT)
    instants = [datetime.fromisoformat(i["occurred_at"]).astimezone(UTC) for i in items]
    assert instants == sorted(instants, reverse=True)
    # The card change (07:00Z) sorts before the order (08:00Z), not by its text.
    assert [i["type"] for i in items[-3:]] == [
        "customer.card_changed",
        "customer.created",
        "visit.recorded",
    ]
    first = items[0]
    assert first.keys() == {
        "position",
        "event_id",
        "type",
        "kind",
        "occurred_at",
        "actor",
        "summary",
        "data",
    }
    assert first["type"] == "email.bounced" and first["kind"] == "emails"
    assert first["occurred_at"] == "2026-10-02T10:00:05Z"
    assert first["data"] == {"message_id": "e2", "reason": "mailbox full"}
    assert first["summary"] == "Email “Sale” bounced: mailbox full"  # named by email.sent
    assert first["actor"] == {"kind": "user", "id": "u-1", "name": "Maria"}
    assert first["event_id"] == SCRIPT[13]["event_id"]
    assert items[-3]["occurred_at"] == "2026-10-01T09:00:00+02:00"  # the producer's text


def test_timeline_pages_filters_and_ties(app: LedgerApplication) -> None:
    same = "2026-10-01T10:00:00Z"
    events = [event("customer.created", "c1", {"card": {}}, occurred_at=same)]
    events += [
        event("note.added", "c1", {"note_id": f"n{i}", "text": "x"}, occurred_at=same)
        for i in range(7)
    ]
    events += [
        event(
            "call.logged",
            "c1",
            {"call_id": f"k{i}", "direction": "inbound", "result": "answered", "duration_s": 1},
            occurred_at=f"2026-10-0{i + 2}T10:00:00Z",
        )
        for i in range(3)
    ]
    append(app, events)
    full = tab(app, "timeline", timeline=TimelineQuery(limit=1000))["items"]
    # Equal times: the later position first.
    tied = [i["position"] for i in full if i["occurred_at"] == same]
    assert tied == sorted(tied, reverse=True) and len(tied) == 8
    pages, cursor = [], None
    while True:
        answer = tab(app, "timeline", timeline=TimelineQuery(limit=3, cursor=cursor))
        pages.append(answer["items"])
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    assert [i["position"] for p in pages for i in p] == [i["position"] for i in full]
    calls = tab(app, "timeline", timeline=TimelineQuery(kinds=("calls",)))["items"]
    assert [i["data"]["call_id"] for i in calls] == ["k2", "k1", "k0"]
    both = tab(app, "timeline", timeline=TimelineQuery(kinds=("calls", "notes")))["items"]
    assert len(both) == 10
    window = TimelineQuery(
        since=datetime(2026, 10, 3, tzinfo=UTC), until=datetime(2026, 10, 4, 10, tzinfo=UTC)
    )
    assert [i["data"]["call_id"] for i in tab(app, "timeline", timeline=window)["items"]] == ["k1"]
    first_page = tab(app, "timeline", timeline=TimelineQuery(limit=1))["next_cursor"]
    with pytest.raises(BadCursor, match="another customer"):
        tab(app, "timeline", customer="c2", timeline=TimelineQuery(cursor=first_page))
    for garbage in ("abc", "!!", "W10", first_page[:-2]):
        with pytest.raises(BadCursor, match="not a cursor"):
            tab(app, "timeline", timeline=TimelineQuery(cursor=garbage))


def test_tasks_tab_with_actions_for_the_viewer(scripted: LedgerApplication) -> None:
    answer = tab(scripted, "tasks")
    assert answer == {
        "customer_id": "c1",
        "tab": "tasks",
        "items": [
            {
                "task_id": "t2",
                "title": "Send offer",
                "status": "completed",
                "created_at": "2026-10-01T14:10:00Z",
                "completed_at": "2026-10-01T14:30:00Z",
                "due_at": None,
                "assignee_id": "u-2",
                "assignee_name": None,  # the service layer names people
                "actions": ["reopen", "delete"],
            },
            {
                "task_id": "t1",
                "title": "Call back",
                "status": "pending",
                "created_at": "2026-10-01T14:00:00Z",
                "completed_at": None,
                "due_at": "2026-10-05T09:00:00+02:00",
                "assignee_id": None,
                "assignee_name": None,
                "actions": ["edit", "complete", "delete"],
            },
        ],
        "next_cursor": None,
    }
    agent = RightsPolicy(
        roles={"agent": frozenset({"tasks.edit"})}, users={"u-7": frozenset({"agent"})}
    )
    limited = tab(scripted, "tasks", viewer="u-7", policy=agent)["items"]
    assert [i["actions"] for i in limited] == [[], ["edit", "complete"]]
    nobody = tab(scripted, "tasks", viewer="u-9", policy=agent)["items"]
    assert [i["actions"] for i in nobody] == [[], ["complete"]]


def test_visits_segments_chats_emails(scripted: LedgerApplication) -> None:
    assert tab(scripted, "visits")["items"] == [
        {
            "visit_id": "v1",
            "started_at": "2026-10-01T15:00:00Z",
            "site": "shop",
            "source": "google",
            "channel": "search",
            "duration_s": 120,
            "pages_viewed": 4,
            "utm": {"source": "google", "medium": "cpc"},  # absent keys left out
        },
        {
            "visit_id": "v2",
            "started_at": "2026-10-01T05:00:00Z",
            "site": None,
            "source": "(direct)",
            "channel": "direct",
            "duration_s": 5,
            "pages_viewed": None,
            "utm": {},
        },
    ]
    segments = tab(scripted, "segments")
    assert segments["memberships"] == ["news"]
    bot = {"kind": "system", "id": "crm", "name": None}
    assert segments["items"] == [
        {
            "segment_id": "vip",
            "segment_name": "VIP",
            "change": "left",
            "occurred_at": "2026-10-01T09:30:00Z",
            "actor": bot,
        },
        {
            "segment_id": "news",
            "segment_name": None,
            "change": "joined",
            "occurred_at": "2026-10-01T09:20:00Z",
            "actor": bot,
        },
        {
            "segment_id": "vip",
            "segment_name": "VIP",
            "change": "joined",
            "occurred_at": "2026-10-01T09:10:00Z",
            "actor": bot,
        },
    ]
    assert tab(scripted, "chats")["items"] == [
        {
            "dialog_id": "d2",
            "started_at": "2026-10-02T08:00:00Z",
            "status": "new",
            "message_count": 0,
            "channel": "website",
            "url": None,
        },
        {
            "dialog_id": "d1",
            "started_at": "2026-10-01T13:00:00Z",
            "status": "waiting",
            "message_count": 2,
            "channel": "whatsapp",
            "url": "https://chat/d1",
        },
    ]
    emails = tab(scripted, "emails")
    assert emails["items"] == [
        {
            "message_id": "e2",
            "subject": "Sale",
            "sent_at": "2026-10-02T10:00:00Z",
            "delivered": False,
            "opened_at": None,
            "open_count": 0,
            "clicks": 0,
        },
        {
            "message_id": "e1",
            "subject": "Hi",
            "sent_at": "2026-10-01T10:00:00Z",
            "delivered": True,
            "opened_at": "2026-10-01T11:00:00Z",
            "open_count": 2,
            "clicks": 1,
        },
    ]
    assert emails["last_email"] == {"message_id": "e2", "opened": False}


def test_orders_and_card_history(scripted: LedgerApplication) -> None:
    maria = {"kind": "user", "id": "u-1", "name": "Maria"}
    # One item per order, as it is now; its changes are the order's own view.
    assert tab(scripted, "orders")["items"] == [
        {
            "order_id": "o1",
            "number": None,
            "status": "paid",
            "total": "9.00",
            "currency": "EUR",
            "created_at": "2026-10-01T08:00:00Z",
            "changed_at": "2026-10-01T09:00:00Z",
            "changed_by": maria,
            "change_count": 1,
        }
    ]
    card = tab(scripted, "card")["items"]
    assert card[0] == {
        "field": "email",
        "old": "a@x",
        "new": "b@x",
        "occurred_at": "2026-10-01T09:00:00+02:00",
        "actor": maria,
    }
    assert [(i["field"], i["old"], i["new"]) for i in card[1:]] == [
        ("name", None, "Ann"),
        ("email", None, "a@x"),
    ]


@pytest.mark.parametrize("name", [p.name for p in PROJECTIONS if p.tab])
def test_unknown_customer_has_an_empty_tab(scripted: LedgerApplication, name: str) -> None:
    answer = tab(scripted, name, customer="nobody")
    assert answer["items"] == [] and answer["customer_id"] == "nobody"
    if name == "segments":
        assert answer["memberships"] == []
    if name == "emails":
        assert answer["last_email"] is None
    if name == "timeline":
        assert answer["next_cursor"] is None


def test_rows_do_not_depend_on_batch_size(app: LedgerApplication, store_url: str) -> None:
    append(app, history(customers=6, per_customer=60, seed=3))
    everything = list(PROJECTIONS)
    with Connection(app.url) as conn:
        replay_ready(conn)
        Runner(conn, [Target.live(p) for p in everything], batch_size=7).catch_up()
        small = dump(store_url)
        replay.reset(conn, everything)
        assert all(v == [] for v in dump(store_url).values())
        Runner(conn, [Target.live(p) for p in everything], batch_size=1000).catch_up()
        large = dump(store_url)
        replay.rebuild(conn, everything, batch_size=50)
    assert small == large == dump(store_url)
    assert sum(len(rows) for rows in small.values()) > 360
    assert set(tracked_positions(store_url).values()) == {360}


def test_projections_read_the_catalogues_event_types() -> None:
    # Read models name the types they read (their modules never import the
    # contracts); a misspelt or retired name would silently read nothing.
    catalogue = set(EVENT_TYPES)
    for projection in PROJECTIONS:
        assert projection.types, projection.name
        assert set(projection.types) <= catalogue, projection.name
    assert get("timeline").types == catalogue
    assert get("card").types == {"customer.created", "customer.card_changed"}
