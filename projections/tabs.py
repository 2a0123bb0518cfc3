"""`ledger tab`'s queries: one function per tab, each a query by customer id.

Each answer is the spec's JSON object: `{"customer_id", "tab", "items", ...}`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.db import Connection
from ledger.rights import ALLOW_ALL, RightsPolicy
from projections.card import card_tab
from projections.chats import chats_tab
from projections.emails import emails_tab
from projections.orders import orders_tab
from projections.registry import NAMES
from projections.segments import segments_tab
from projections.tasks import tasks_tab
from projections.timeline import TimelineQuery, timeline_tab
from projections.visits import visits_tab

TABS: tuple[str, ...] = NAMES


@dataclass(frozen=True)
class TabRequest:
    customer_id: str
    tab: str
    timeline: TimelineQuery = field(default_factory=TimelineQuery)
    viewer: str | None = None  # tasks: whose rights decide `actions`
    policy: RightsPolicy = ALLOW_ALL

    def __post_init__(self) -> None:
        if self.tab not in TABS:
            raise ValueError(f"unknown tab {self.tab!r} (tabs: {', '.join(TABS)})")


def read_tab(conn: Connection, request: TabRequest) -> dict[str, Any]:
    customer = request.customer_id
    match request.tab:
        case "timeline":
            return timeline_tab(conn, customer, request.timeline)
        case "tasks":
            return tasks_tab(conn, customer, request.viewer, request.policy)
        case "visits":
            return visits_tab(conn, customer)
        case "segments":
            return segments_tab(conn, customer)
        case "chats":
            return chats_tab(conn, customer)
        case "emails":
            return emails_tab(conn, customer)
        case "orders":
            return orders_tab(conn, customer)
        case "card":
            return card_tab(conn, customer)
    raise AssertionError(request.tab)
