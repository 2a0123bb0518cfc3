"""The tabs' answers as pydantic models: one definition of each tab item.

`ledger tab --format json` prints these and the HTTP API serves them (they are
its OpenAPI response models), so the two can never drift apart. The query
functions build plain rows; `answer()` validates them into the tab's model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    # Built on first use: `ledger tab` validates one tab's answer, not all eight.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class ActorRef(_Model):
    kind: str
    id: str
    name: str | None = None


class TimelineItem(_Model):
    position: int
    event_id: str
    type: str
    kind: str
    occurred_at: str
    actor: ActorRef
    summary: str
    data: dict[str, Any]


TaskAction = Literal["edit", "complete", "reopen", "delete"]


class TaskItem(_Model):
    task_id: str
    title: str
    status: Literal["pending", "completed"]
    created_at: str
    completed_at: str | None
    due_at: str | None
    assignee_id: str | None
    assignee_name: str | None = None  # the assignee's name, when known
    actions: list[TaskAction]


class VisitItem(_Model):
    visit_id: str
    started_at: str
    site: str | None
    source: str
    channel: str
    duration_s: int
    pages_viewed: int | None
    # The web-analytics campaign: source, medium, campaign, term, content (each
    # only when the visit had it).
    utm: dict[str, str] = {}


class SegmentItem(_Model):
    segment_id: str
    segment_name: str | None
    change: Literal["joined", "left"]
    occurred_at: str
    actor: ActorRef


class Membership(_Model):
    segment_id: str
    segment_name: str | None


class ChatItem(_Model):
    dialog_id: str
    started_at: str
    status: str
    message_count: int
    channel: str
    url: str | None


class EmailItem(_Model):
    message_id: str
    subject: str
    sent_at: str
    delivered: bool
    opened_at: str | None
    open_count: int
    clicks: int


class LastEmail(_Model):
    message_id: str
    opened: bool


class OrderItem(_Model):
    order_id: str
    number: str | None
    status: str  # as it is now
    total: str | None  # a decimal string, in `currency`
    currency: str | None
    created_at: str
    changed_at: str  # the order's last event (its creation when never changed)
    changed_by: ActorRef  # who made that last change
    change_count: int  # order.changed events since its creation


class OrderChange(_Model):
    field: str
    old: Any
    new: Any
    occurred_at: str
    actor: ActorRef


# One order as it is now and a page of its changes, newest first
# (`GET /v1/customers/{id}/orders/{order_id}`).
class OrderHistory(OrderItem):
    customer_id: str
    items: list[OrderChange]
    next_cursor: str | None  # None on the last page


class ChatMessageItem(_Model):
    message_id: str
    direction: Literal["inbound", "outbound"]
    author: ActorRef  # the event's actor
    sent_at: str
    text: str | None  # "[erased]" once the customer is erased


# One dialogue and a page of its messages in the order they were sent
# (`GET /v1/customers/{id}/chats/{dialog_id}`).
class Dialogue(_Model):
    customer_id: str
    dialog_id: str
    channel: str
    status: str
    started_at: str
    message_count: int
    url: str | None  # the producer's link to the dialogue in its messenger
    items: list[ChatMessageItem]
    next_cursor: str | None  # None on the last page


class CardChange(_Model):
    field: str
    old: Any
    new: Any
    occurred_at: str
    actor: ActorRef


class _Tab(_Model):
    customer_id: str


class TimelineTab(_Tab):
    tab: Literal["timeline"]
    items: list[TimelineItem]
    next_cursor: str | None  # None on the last page


class TasksTab(_Tab):
    tab: Literal["tasks"]
    items: list[TaskItem]
    next_cursor: str | None  # None on the last page


class VisitsTab(_Tab):
    tab: Literal["visits"]
    items: list[VisitItem]
    next_cursor: str | None  # None on the last page


class SegmentsTab(_Tab):
    tab: Literal["segments"]
    items: list[SegmentItem]
    next_cursor: str | None  # None on the last page
    memberships: list[str]  # whole on every page
    member_of: list[Membership] = []  # the same, each with its segment's name


class ChatsTab(_Tab):
    tab: Literal["chats"]
    items: list[ChatItem]
    next_cursor: str | None  # None on the last page


class EmailsTab(_Tab):
    tab: Literal["emails"]
    items: list[EmailItem]
    next_cursor: str | None  # None on the last page
    last_email: LastEmail | None  # the newest email, on every page


class OrdersTab(_Tab):
    tab: Literal["orders"]
    items: list[OrderItem]
    next_cursor: str | None  # None on the last page


class CardTab(_Tab):
    tab: Literal["card"]
    items: list[CardChange]
    next_cursor: str | None  # None on the last page


TabAnswer = (
    TimelineTab | TasksTab | VisitsTab | SegmentsTab | ChatsTab | EmailsTab | OrdersTab | CardTab
)

TAB_MODELS: dict[str, type[TabAnswer]] = {
    "timeline": TimelineTab,
    "tasks": TasksTab,
    "visits": VisitsTab,
    "segments": SegmentsTab,
    "chats": ChatsTab,
    "emails": EmailsTab,
    "orders": OrdersTab,
    "card": CardTab,
}


def answer(raw: dict[str, Any]) -> TabAnswer:
    """A query function's rows as the tab's model."""
    return TAB_MODELS[raw["tab"]].model_validate(raw)
