"""`ledger tab`'s queries: one function per tab, each a query by customer id.

Each answer is the spec's JSON object: `{"customer_id", "tab", "items", ...}`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.db import Connection
from ledger.people import EMPTY, Directory
from ledger.rights import ALLOW_ALL, RightsPolicy
from projections import card, chats, emails, orders, segments, tasks, timeline, visits
from projections.card import card_tab
from projections.chats import chats_tab
from projections.emails import emails_tab
from projections.history import HISTORY_KEY
from projections.merges import members, widen
from projections.orders import orders_tab
from projections.paging import Page, decode_cursor
from projections.registry import TAB_NAMES
from projections.sealing import revealing
from projections.segments import segments_tab
from projections.tasks import tasks_tab
from projections.timeline import TimelineQuery, timeline_tab
from projections.visits import visits_tab

TABS: tuple[str, ...] = TAB_NAMES


@dataclass(frozen=True)
class TabRequest:
    """Which tab of which customer to read, and how: the timeline's filters and page,
    the viewer whose rights decide task actions, the page of any other tab."""

    customer_id: str
    tab: str
    timeline: TimelineQuery = field(default_factory=TimelineQuery)
    viewer: str | None = None  # tasks: whose rights decide `actions`
    policy: RightsPolicy = ALLOW_ALL
    # Other tabs than the timeline: which page (the timeline's query has its own,
    # with its filters).
    page: Page = field(default_factory=Page)
    # Whose names the people directory gives (services.people names the people
    # the tab's items show).
    people: Directory = EMPTY

    def __post_init__(self) -> None:
        if self.tab not in TABS:
            raise ValueError(f"unknown tab {self.tab!r} (tabs: {', '.join(TABS)})")


def read_tab(conn: Connection, request: TabRequest) -> dict[str, Any]:
    """The tab's answer for the request, with sealed personal cells revealed."""
    customer, page = request.customer_id, request.page
    conn = revealing(conn)  # personal cells are stored sealed
    match request.tab:
        case "timeline":
            return timeline_tab(conn, customer, request.timeline)
        case "tasks":
            return tasks_tab(conn, customer, request.viewer, request.policy, page)
        case "visits":
            return visits_tab(conn, customer, page)
        case "segments":
            return segments_tab(conn, customer, page)
        case "chats":
            return chats_tab(conn, customer, page)
        case "emails":
            return emails_tab(conn, customer, page)
        case "orders":
            return orders_tab(conn, customer, page)
        case "card":
            return card_tab(conn, customer, page)
    raise AssertionError(request.tab)


# Each tab's rows, as its own query selects them: `SELECT COUNT(*)` over the
# same clause counts exactly the items the tab would list.
_ROWS: dict[str, str] = {
    "timeline": timeline.ROWS,
    "tasks": tasks.ROWS,
    "visits": visits.ROWS,
    "segments": segments.ROWS,
    "chats": chats.ROWS,
    "emails": emails.ROWS,
    "orders": orders.ROWS,
    "card": card.ROWS,
}


# How many sort-key columns each tab's cursor holds.
_KEY_WIDTH: dict[str, int] = {
    "timeline": 2,
    "tasks": len(tasks.PAGED.key),
    "visits": len(visits.PAGED.key),
    "segments": len(segments.PAGED.key),
    "chats": len(chats.PAGED.key),
    "emails": len(emails.PAGED.key),
    "orders": len(orders.PAGED.key),
    "card": len(HISTORY_KEY),
}


def check_cursor(tab: str, customer_id: str, cursor: str) -> None:
    """Raises BadCursor unless `cursor` was handed out for this customer's `tab`."""
    decode_cursor(tab, customer_id, cursor, _KEY_WIDTH[tab])


def customer_exists(conn: Connection, customer_id: str) -> bool:
    """Whether any event of the customer is stored (the timeline lists each one)."""
    return conn.fetchone(f"SELECT 1 {_ROWS['timeline']} LIMIT 1", (customer_id,)) is not None


def tab_counts(conn: Connection, customer_id: str, cap: int | None = None) -> dict[str, int]:
    """How many items each tab lists for the customer (the timeline: every
    event). With `cap`, counting stops past it: a count of cap + 1 means "more
    than cap", and a customer with 100,000 events costs what one with `cap` does.
    One statement for all tabs: one round trip, not eight (the card page's header)."""
    group = members(conn, customer_id)
    counts = []
    for tab in TABS:
        rows = widen(_ROWS[tab], len(group))
        if cap is None:
            counts.append(f"(SELECT COUNT(*) {rows})")
        else:
            limit = int(cap) + 1
            counts.append(f"(SELECT COUNT(*) FROM (SELECT 1 {rows} LIMIT {limit}) AS {tab})")
    row = conn.fetchone(f"SELECT {', '.join(counts)}", group * len(TABS))
    assert row is not None  # one row, always
    return {tab: int(count) for tab, count in zip(TABS, row, strict=True)}
