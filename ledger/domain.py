"""The write model: one aggregate per customer, enforcing the spec's rules.

Free of I/O. The customer is the consistency boundary: every rule in the spec
is about one customer's own orders, emails, tasks, dialogues and segments. The
one rule that crosses customers (an order, email, dialogue, task or visit id is
unique in the whole ledger) is checked by the service against the events
table's claim index, and enforced by that index's uniqueness on insert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from ledger.events import PAYLOADS, InboundEvent, Payload, RecordedEvent
from ledger.rights import RightsPolicy

_CUSTOMER_NAMESPACE = uuid5(NAMESPACE_URL, "https://interaction-ledger/customer")


def _v(payload: Any, name: str) -> Any:
    """A payload field by name; the caller has already matched the event type."""
    return getattr(payload, name)


def customer_stream_id(customer_id: str) -> UUID:
    return uuid5(_CUSTOMER_NAMESPACE, customer_id)


class RuleViolation(Exception):
    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class CustomerEvent:
    """The library's view of one event in a customer's stream (its DomainEventProtocol).

    `envelope` is the producer's validated envelope when the event is new, or the
    stored envelope when it was read back; both carry type, customer and data."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime  # recorded_at
    event_id: str
    schema_version: int
    envelope: InboundEvent | RecordedEvent

    @property
    def event_type(self) -> str:
        return self.envelope.type

    def mutate(self, aggregate: Customer | None) -> Customer:
        if aggregate is None:
            aggregate = Customer(id=self.originator_id, customer_id=self.envelope.customer_id)
        aggregate.apply(self.envelope.type, self.envelope.data)
        aggregate.version = self.originator_version
        return aggregate


@dataclass(frozen=True)
class CustomerSnapshot:
    """A customer's state at one version, so a busy customer (100,000 events) loads
    in milliseconds instead of replaying its whole stream."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    state: dict[str, Any]

    @classmethod
    def take(cls, customer: Customer, timestamp: datetime) -> CustomerSnapshot:
        return cls(
            originator_id=customer.id,
            originator_version=customer.version,
            timestamp=timestamp,
            state={
                "customer_id": customer.customer_id,
                "orders": sorted(customer.orders),
                "emails": sorted(customer.emails),
                "sms": sorted(customer.sms),
                "dialogs": customer.dialogs,
                "tasks": customer.tasks,
                "segments": sorted(customer.segments),
                "visits": sorted(customer.visits),
            },
        )

    def mutate(self, aggregate: Customer | None) -> Customer:
        s = self.state
        return Customer(
            id=self.originator_id,
            customer_id=s["customer_id"],
            version=self.originator_version,
            orders=set(s["orders"]),
            emails=set(s["emails"]),
            sms=set(s["sms"]),
            dialogs=dict(s["dialogs"]),
            tasks=dict(s["tasks"]),
            segments=set(s["segments"]),
            visits=set(s["visits"]),
        )


_TASK_RIGHTS = {
    "task.edited": "tasks.edit",
    "task.reopened": "tasks.reopen",
    "task.deleted": "tasks.delete",
}
# For each task event: the statuses it may start from.
_TASK_FROM = {
    "task.edited": ("pending",),
    "task.completed": ("pending",),
    "task.reopened": ("completed",),
    "task.deleted": ("pending", "completed"),
}
_TASK_TO = {
    "task.created": "pending",
    "task.completed": "completed",
    "task.reopened": "pending",
    "task.deleted": "deleted",
}


@dataclass
class Customer:
    id: UUID
    customer_id: str
    version: int = 0
    orders: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    sms: set[str] = field(default_factory=set)
    dialogs: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)
    segments: set[str] = field(default_factory=set)
    visits: set[str] = field(default_factory=set)
    _pending: list[CustomerEvent] = field(default_factory=list, repr=False)

    @property
    def exists(self) -> bool:
        return self.version > 0 or bool(self._pending)

    def check(self, event: InboundEvent, policy: RightsPolicy) -> None:
        """Raise RuleViolation if `event` breaks a rule given this customer's state."""
        t, data = event.type, event.data
        if t == "customer.created":
            if self.exists:
                raise RuleViolation("customer_id", f"customer {self.customer_id!r} already exists")
            return
        if not self.exists:
            raise RuleViolation("customer_id", f"customer {self.customer_id!r} does not exist")
        family = t.split(".", 1)[0]
        if family == "order":
            self._check_subject(t, "order_id", _v(data, "order_id"), self.orders, "order")
        elif family == "email":
            self._check_subject(t, "message_id", _v(data, "message_id"), self.emails, "email")
        elif t in ("sms.delivered", "sms.failed"):
            if _v(data, "message_id") not in self.sms:
                raise RuleViolation(
                    "data.message_id",
                    f"sms {_v(data, 'message_id')!r} was not sent to this customer",
                )
        elif family == "segment":
            member = _v(data, "segment_id") in self.segments
            if t == "segment.joined" and member:
                raise RuleViolation(
                    "data.segment_id", f"already a member of segment {_v(data, 'segment_id')!r}"
                )
            if t == "segment.left" and not member:
                raise RuleViolation(
                    "data.segment_id", f"not a member of segment {_v(data, 'segment_id')!r}"
                )
        elif family == "chat":
            self._check_chat(t, data)
        elif family == "task":
            self._check_task(event, policy)
        elif t == "visit.recorded" and _v(data, "visit_id") in self.visits:
            raise RuleViolation("data.visit_id", f"visit {_v(data, 'visit_id')!r} already exists")

    def _check_subject(
        self, t: str, field_name: str, value: str, known: set[str], noun: str
    ) -> None:
        if t.endswith((".created", ".sent")):
            if value in known:
                raise RuleViolation(f"data.{field_name}", f"{noun} {value!r} already exists")
        elif value not in known:
            raise RuleViolation(
                f"data.{field_name}", f"{noun} {value!r} does not exist for this customer"
            )

    def _check_chat(self, t: str, data: Any) -> None:
        status = self.dialogs.get(_v(data, "dialog_id"))
        if t == "chat.started":
            if status is not None:
                raise RuleViolation(
                    "data.dialog_id", f"dialogue {_v(data, 'dialog_id')!r} already exists"
                )
            return
        if status is None:
            raise RuleViolation(
                "data.dialog_id",
                f"dialogue {_v(data, 'dialog_id')!r} does not exist for this customer",
            )
        if t == "chat.message" and status == "closed":
            raise RuleViolation("data.dialog_id", f"dialogue {_v(data, 'dialog_id')!r} is closed")

    def _check_task(self, event: InboundEvent, policy: RightsPolicy) -> None:
        t, task_id = event.type, _v(event.data, "task_id")
        status = self.tasks.get(task_id)
        if t == "task.created":
            if status is not None:
                raise RuleViolation("data.task_id", f"task {task_id!r} already exists")
            return
        if status is None:
            raise RuleViolation(
                "data.task_id", f"task {task_id!r} does not exist for this customer"
            )
        allowed = _TASK_FROM[t]
        if status not in allowed:
            raise RuleViolation(
                "data.task_id",
                f"task {task_id!r} is {status}; {t} needs it {' or '.join(allowed)}",
            )
        right = _TASK_RIGHTS.get(t)
        if right and event.actor.kind == "user" and not policy.allows(event.actor.id, right):
            raise RuleViolation("actor.id", f"user {event.actor.id!r} lacks the right {right}")

    def apply(self, t: str, data: Payload) -> None:
        if t == "order.created":
            self.orders.add(_v(data, "order_id"))
        elif t == "email.sent":
            self.emails.add(_v(data, "message_id"))
        elif t == "sms.sent":
            self.sms.add(_v(data, "message_id"))
        elif t == "segment.joined":
            self.segments.add(_v(data, "segment_id"))
        elif t == "segment.left":
            self.segments.discard(_v(data, "segment_id"))
        elif t == "chat.started":
            self.dialogs[_v(data, "dialog_id")] = "new"
        elif t == "chat.status_changed":
            self.dialogs[_v(data, "dialog_id")] = _v(data, "status")
        elif t in _TASK_TO:
            self.tasks[_v(data, "task_id")] = _TASK_TO[t]
        elif t == "visit.recorded":
            self.visits.add(_v(data, "visit_id"))

    def record(self, event: InboundEvent, event_id: str, recorded_at: datetime) -> CustomerEvent:
        """Accept a checked event: apply it and keep it for the next save."""
        self.apply(event.type, event.data)
        domain_event = CustomerEvent(
            originator_id=self.id,
            originator_version=self.version + len(self._pending) + 1,
            timestamp=recorded_at,
            event_id=event_id,
            schema_version=PAYLOADS[event.type].schema_version,
            envelope=event,
        )
        self._pending.append(domain_event)
        return domain_event

    def collect_events(self) -> list[CustomerEvent]:
        events, self._pending = self._pending, []
        if events:
            self.version = events[-1].originator_version
        return events

    def discard_pending(self) -> None:
        self._pending = []
