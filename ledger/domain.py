"""The write model: one aggregate per customer, enforcing the spec's rules.

Free of I/O. The customer is the consistency boundary: every rule in the spec
is about one customer's own orders, emails, tasks, dialogues and segments. The
one rule that crosses customers (an order, email, dialogue, task or visit id is
unique in the whole ledger) is checked by the service against the events
table's claim index, and enforced by that index's uniqueness on insert.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from copy import copy
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from ledger.events import InboundEvent, Payload, RecordedEvent
from ledger.events.chat import ChatMessage, ChatStarted, ChatStatusChanged
from ledger.events.customer import (
    CustomerAbsorbed,
    CustomerCreated,
    CustomerErased,
    CustomerMerged,
    CustomerNotDuplicate,
    CustomerReleased,
    CustomerUnmerged,
)
from ledger.events.email import EmailSent
from ledger.events.order import OrderCreated
from ledger.events.segment import SegmentJoined, SegmentLeft
from ledger.events.sms import SmsDelivered, SmsFailed, SmsSent
from ledger.events.task import (
    TaskCompleted,
    TaskCreated,
    TaskDeleted,
    TaskEdited,
    TaskReopened,
)
from ledger.events.visit import VisitRecorded
from ledger.rights import RightsPolicy

_CUSTOMER_NAMESPACE = uuid5(NAMESPACE_URL, "https://interaction-ledger/customer")


# Kept for the customers most recently asked (a uuid5 is a hash and a UUID built
# in Python, and a batch asks each of its customers' several times).
@lru_cache(maxsize=1 << 14)
def customer_stream_id(customer_id: str) -> UUID:
    """The id of the customer's event stream: a UUID derived from the customer id, so it
    needs no lookup."""
    return uuid5(_CUSTOMER_NAMESPACE, customer_id)


class RuleViolation(Exception):
    """An event the customer's stored state forbids; `field` and `reason` say why,
    `code` names the rule (stable, for doors that say it in their own words)."""

    def __init__(self, field: str, reason: str, code: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.code = code
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
        aggregate.apply(self.envelope.data)
        aggregate.version = self.originator_version
        return aggregate


class AcceptedEvent:
    """An event the rules accepted, not stored yet: what the row builder
    (`ledger.mapper`) needs of it. One is made for every appended event, so it is
    a plain record rather than the frozen `CustomerEvent`, which the library
    reads stored events back as."""

    __slots__ = (
        "envelope",
        "event_id",
        "originator_id",
        "originator_version",
        "schema_version",
        "timestamp",
    )

    def __init__(
        self,
        originator_id: UUID,
        originator_version: int,
        timestamp: datetime,
        event_id: str,
        schema_version: int,
        envelope: InboundEvent,
    ) -> None:
        self.originator_id = originator_id
        self.originator_version = originator_version
        self.timestamp = timestamp  # recorded_at
        self.event_id = event_id
        self.schema_version = schema_version
        self.envelope = envelope


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
                "erased": customer.erased,
                "not_duplicates": sorted(customer.not_duplicates),
                "merged_into": customer.merged_into,
                "absorbed": sorted(customer.absorbed),
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
            erased=bool(s.get("erased", False)),
            not_duplicates=set(s.get("not_duplicates", ())),
            merged_into=s.get("merged_into"),
            absorbed=set(s.get("absorbed", ())),
        )


TaskAction = TaskEdited | TaskCompleted | TaskReopened | TaskDeleted

_TASK_RIGHTS: dict[type[Payload], str] = {
    TaskEdited: "tasks.edit",
    TaskReopened: "tasks.reopen",
    TaskDeleted: "tasks.delete",
}
# For each action on a task: the statuses it may start from.
_TASK_FROM: dict[type[Payload], tuple[str, ...]] = {
    TaskEdited: ("pending",),
    TaskCompleted: ("pending",),
    TaskReopened: ("completed",),
    TaskDeleted: ("pending", "completed"),
}
_TASK_TO: dict[type[Payload], str] = {
    TaskCreated: "pending",
    TaskCompleted: "completed",
    TaskReopened: "pending",
    TaskDeleted: "deleted",
}
# Subjects that are created once per customer and must exist before anything else
# refers to them, by the payloads' `subject_kind`; the noun is for messages.
_CLAIMED: dict[str, str] = {
    "order": "order",
    "email": "email",
    "dialog": "dialogue",
    "task": "task",
    "visit": "visit",
}


# The rules `Customer.check` writes out case by case, in words for the catalogue.
_OTHER_RULES: dict[type[Payload], str] = {
    SmsDelivered: "sms must have been sent to this customer",
    SmsFailed: "sms must have been sent to this customer",
    SegmentJoined: "not already a member",
    SegmentLeft: "must be a member",
    ChatMessage: "dialogue must not be closed",
    CustomerNotDuplicate: (
        "`other_customer_id` an existing customer other than this one; a mark not already "
        "standing, a withdrawal only of a standing mark; a user needs the right "
        "`customers.merge`"
    ),
    CustomerMerged: (
        "this customer not merged into another; each of `absorbed` an existing customer "
        "other than this one, not erased, not merged into any customer and not holding "
        "customers of its own; a user needs the right `customers.merge`"
    ),
    CustomerAbsorbed: (
        "this customer not merged into any customer and not holding customers of its own; "
        "`into` an existing customer other than this one, not merged into another; "
        "a user needs the right `customers.merge`"
    ),
    CustomerUnmerged: (
        "`released` merged into this customer; a user needs the right `customers.merge`"
    ),
    CustomerReleased: (
        "this customer merged into `from_customer_id`; a user needs the right `customers.merge`"
    ),
}

_MERGE_EVENTS = (CustomerMerged, CustomerAbsorbed, CustomerUnmerged, CustomerReleased)


# The types `Customer.check`'s cases and `_MERGE_EVENTS` name, and those
# `Customer.apply`'s cases name: any other type skips the match statement, whose
# cases are tried one by one for every appended event. A test
# (tests/unit/test_domain_rules.py) holds these to the cases written.
_RULED: frozenset[type[Payload]] = frozenset(
    {
        SmsDelivered,
        SmsFailed,
        SegmentJoined,
        SegmentLeft,
        ChatMessage,
        TaskEdited,
        TaskCompleted,
        TaskReopened,
        TaskDeleted,
        CustomerNotDuplicate,
        *_MERGE_EVENTS,
    }
)
# The stateful types whose events change nothing but what their subject id
# says (`Customer.apply_subject`); the events table keeps that id in a column
# of its own, so loading a customer applies them without decoding the stored
# event (most of a stream's stateful events).
APPLIED_BY_SUBJECT: frozenset[type[Payload]] = frozenset(
    {
        OrderCreated,
        EmailSent,
        SmsSent,
        SegmentJoined,
        SegmentLeft,
        ChatStarted,
        TaskCreated,
        TaskCompleted,
        TaskReopened,
        TaskDeleted,
        VisitRecorded,
    }
)
_STATEFUL: frozenset[type[Payload]] = APPLIED_BY_SUBJECT | {
    ChatStatusChanged,
    CustomerErased,
    *_MERGE_EVENTS,
    CustomerNotDuplicate,
}

# The types whose events change a customer's state beyond its version, as
# loading a customer reads them (sorted, for statements that name them): by
# their subject column, or by decoding their stored data.
SUBJECT_TYPES = tuple(sorted(p.type_name for p in APPLIED_BY_SUBJECT))
DATA_TYPES = tuple(sorted(p.type_name for p in _STATEFUL - APPLIED_BY_SUBJECT))


# Tested by type (payload classes are not subclassed): an isinstance that fails
# against pydantic classes costs several times more, and this runs per event.
_SMS_REPORTS = frozenset({SmsDelivered, SmsFailed})


def subject_ref(data: Payload) -> tuple[str, str] | None:
    """The existing subject an event refers to, as (kind, id): the claimed
    subject it acts on (not one it creates), or the sms a delivery report is of."""
    if type(data) in _SMS_REPORTS:
        assert isinstance(data, SmsDelivered | SmsFailed)
        return ("sms", data.message_id)
    kind = data.subject_kind
    if kind not in _CLAIMED or data.creates_subject:
        return None
    subject = data.subject_id()
    return None if subject is None else (kind, subject)


def rules_of(payload: type[Payload]) -> list[str]:
    """The rules `Customer.check` applies to one type, in words (docs/events.md).
    Every type but `customer.created` also needs its customer to exist."""
    if payload is CustomerCreated:
        return ["once per customer"]
    rules = []
    if payload.subject_kind in _CLAIMED:
        noun = _CLAIMED[payload.subject_kind]
        if payload.creates_subject:
            rules.append(f"`{payload.subject_field}` new")
        else:
            rules.append(f"{noun} must exist for this customer")
    if payload in _TASK_FROM:
        rules.append(f"task must be {' or '.join(_TASK_FROM[payload])}")
    if payload in _TASK_RIGHTS:
        rules.append(f"a user needs the right `{_TASK_RIGHTS[payload]}`")
    if payload in _OTHER_RULES:
        rules.append(_OTHER_RULES[payload])
    return rules


@dataclass
class Customer:
    """One customer's write-side state: what its events have created (orders, emails,
    tasks, dialogues, ...) and their status, enough to check each new event's rules."""

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
    # After customer.erased nothing more is accepted for the customer.
    erased: bool = False
    # Customers this one is marked "not a duplicate" of (standing marks on its stream).
    not_duplicates: set[str] = field(default_factory=set)
    # The customer this one is merged into (None: it is its own card), and the
    # customers merged into this one: read models fold their rows into its tabs.
    merged_into: str | None = None
    absorbed: set[str] = field(default_factory=set)
    _pending: list[AcceptedEvent] = field(default_factory=list, repr=False)

    @property
    def exists(self) -> bool:
        return self.version > 0 or bool(self._pending)

    def clone(self) -> Customer:
        """A copy that events applied to this one later leave as it is: an append
        that loses the race to insert goes back to it instead of loading the
        customer again."""
        twin = copy(self)
        for name in _CONTAINERS:
            setattr(twin, name, getattr(self, name).copy())
        return twin

    @property
    def merged(self) -> bool:
        """Whether this customer is part of a standing merge (either side)."""
        return self.merged_into is not None or bool(self.absorbed)

    def has_subject(self, kind: str, subject_id: str) -> bool:
        """Whether this customer's own stream created the subject (an order, an
        email, a dialogue, a task, a visit, an sms)."""
        if kind == "sms":
            return subject_id in self.sms
        return subject_id in self._known(kind)

    def check(
        self,
        event: InboundEvent,
        policy: RightsPolicy,
        others: Mapping[str, Customer] | None = None,
    ) -> None:
        """Raise RuleViolation if `event` breaks a rule given this customer's state
        (and, for the types that name other customers, theirs: `others`)."""
        data = event.data
        if type(data) is CustomerCreated:  # not isinstance: see _SMS_REPORTS
            if self.exists:
                raise RuleViolation(
                    "customer_id",
                    f"customer {self.customer_id!r} already exists",
                    "customer_exists",
                )
            return
        if not self.exists:
            raise RuleViolation(
                "customer_id", f"customer {self.customer_id!r} does not exist", "customer_missing"
            )
        if self.erased:
            raise RuleViolation("customer_id", "customer is erased", "customer_erased")
        self._check_subject(data)
        if type(data) not in _RULED:
            return  # most events: no rule below is about them (see _RULED)
        match data:
            case SmsDelivered() | SmsFailed() if data.message_id not in self.sms:
                raise RuleViolation(
                    "data.message_id",
                    f"sms {data.message_id!r} was not sent to this customer",
                    "sms_not_sent",
                )
            case SegmentJoined() if data.segment_id in self.segments:
                raise RuleViolation(
                    "data.segment_id",
                    f"already a member of segment {data.segment_id!r}",
                    "segment_member",
                )
            case SegmentLeft() if data.segment_id not in self.segments:
                raise RuleViolation(
                    "data.segment_id",
                    f"not a member of segment {data.segment_id!r}",
                    "segment_not_member",
                )
            case ChatMessage() if self.dialogs[data.dialog_id] == "closed":
                raise RuleViolation(
                    "data.dialog_id", f"dialogue {data.dialog_id!r} is closed", "dialog_closed"
                )
            case TaskEdited() | TaskCompleted() | TaskReopened() | TaskDeleted():
                self._check_task(event, data, policy)
            case CustomerNotDuplicate():
                self._check_mark(event, data, policy, (others or {}).get(data.other_customer_id))
            case CustomerMerged():
                self._check_merged(data, others or {})
            case CustomerAbsorbed():
                self._check_absorbed(data, (others or {}).get(data.into))
            case CustomerUnmerged() if data.released not in self.absorbed:
                raise RuleViolation(
                    "data.released",
                    f"customer {data.released!r} is not merged into {self.customer_id!r}",
                    "not_merged",
                )
            case CustomerReleased() if self.merged_into != data.from_customer_id:
                raise RuleViolation(
                    "data.from_customer_id",
                    f"customer {self.customer_id!r} is not merged into {data.from_customer_id!r}",
                    "not_merged",
                )
        if isinstance(data, _MERGE_EVENTS):
            _check_right(event, policy, "customers.merge")

    def _check_merged(self, data: CustomerMerged, others: Mapping[str, Customer]) -> None:
        if self.merged_into is not None:
            raise RuleViolation(
                "customer_id",
                f"customer {self.customer_id!r} is merged into {self.merged_into!r}; "
                f"merge into {self.merged_into!r} instead",
                "customer_absorbed",
            )
        seen: set[str] = set()
        for i, absorbed in enumerate(data.absorbed):
            field = f"data.absorbed[{i}]"
            if absorbed == self.customer_id:
                raise RuleViolation(
                    field, "a customer cannot be merged into itself", "same_customer"
                )
            if absorbed in seen:
                raise RuleViolation(field, f"customer {absorbed!r} is listed twice", "listed_twice")
            seen.add(absorbed)
            _check_mergeable(field, absorbed, others.get(absorbed))
        for field_name, owner in data.keep.items():
            if owner != self.customer_id and owner not in seen:
                raise RuleViolation(
                    f"data.keep.{field_name}",
                    f"customer {owner!r} is not part of this merge",
                    "keep_outside",
                )

    def _check_absorbed(self, data: CustomerAbsorbed, into: Customer | None) -> None:
        if data.into == self.customer_id:
            raise RuleViolation(
                "data.into", "a customer cannot be merged into itself", "same_customer"
            )
        _check_mergeable("customer_id", self.customer_id, self)
        if into is None or not into.exists:
            raise RuleViolation(
                "data.into", f"customer {data.into!r} does not exist", "customer_missing"
            )
        if into.erased:
            raise RuleViolation("data.into", f"customer {data.into!r} is erased", "customer_erased")
        if into.merged_into is not None:
            raise RuleViolation(
                "data.into",
                f"customer {data.into!r} is merged into {into.merged_into!r}; "
                f"merge into {into.merged_into!r} instead",
                "customer_absorbed",
            )

    def _known(self, subject_kind: str) -> Collection[str]:
        known: dict[str, Collection[str]] = {
            "order": self.orders,
            "email": self.emails,
            "dialog": self.dialogs,
            "task": self.tasks,
            "visit": self.visits,
        }
        return known[subject_kind]

    def _check_subject(self, data: Payload) -> None:
        """A claimed subject is created once, and exists before anything refers to it."""
        kind = data.subject_kind
        if kind not in _CLAIMED:
            return
        value, noun = data.subject_id(), _CLAIMED[kind]
        known = value in self._known(kind)
        if data.creates_subject and known:
            raise RuleViolation(
                f"data.{data.subject_field}", f"{noun} {value!r} already exists", f"{kind}_exists"
            )
        if not data.creates_subject and not known:
            raise RuleViolation(
                f"data.{data.subject_field}",
                f"{noun} {value!r} does not exist for this customer",
                f"{kind}_missing",
            )

    def _check_task(self, event: InboundEvent, data: TaskAction, policy: RightsPolicy) -> None:
        status = self.tasks[data.task_id]
        allowed = _TASK_FROM[type(data)]
        if status not in allowed:
            raise RuleViolation(
                "data.task_id",
                f"task {data.task_id!r} is {status}; {event.type} needs it {' or '.join(allowed)}",
                f"task_is_{status}",
            )
        right = _TASK_RIGHTS.get(type(data))
        if right and event.actor.kind == "user" and not policy.allows(event.actor.id, right):
            raise RuleViolation(
                "actor.id", f"user {event.actor.id!r} lacks the right {right}", "right_missing"
            )

    def _check_mark(
        self,
        event: InboundEvent,
        data: CustomerNotDuplicate,
        policy: RightsPolicy,
        other: Customer | None,
    ) -> None:
        field = "data.other_customer_id"
        if data.other_customer_id == self.customer_id:
            raise RuleViolation(
                field, "a customer cannot be marked against itself", "same_customer"
            )
        if other is None or not other.exists:
            raise RuleViolation(
                field, f"customer {data.other_customer_id!r} does not exist", "customer_missing"
            )
        if other.erased:
            raise RuleViolation(
                field, f"customer {data.other_customer_id!r} is erased", "customer_erased"
            )
        standing = data.other_customer_id in self.not_duplicates
        if data.withdrawn and not standing:
            raise RuleViolation(
                field,
                f"no standing 'not a duplicate' mark of {data.other_customer_id!r} to withdraw",
                "mark_missing",
            )
        if not data.withdrawn and standing:
            raise RuleViolation(
                field,
                f"already marked 'not a duplicate' of {data.other_customer_id!r}",
                "mark_exists",
            )
        right = "customers.merge"
        if event.actor.kind == "user" and not policy.allows(event.actor.id, right):
            raise RuleViolation(
                "actor.id", f"user {event.actor.id!r} lacks the right {right}", "right_missing"
            )

    def apply(self, data: Payload) -> None:
        """Change the state as the accepted event `data` says."""
        kind = type(data)
        if kind not in _STATEFUL:
            return  # a note, a call, ...: nothing below keeps it (see _STATEFUL)
        if kind in APPLIED_BY_SUBJECT:
            subject_id = data.subject_id()
            assert subject_id is not None
            self.apply_subject(kind, subject_id)
            return
        match data:
            case ChatStatusChanged():
                self.dialogs[data.dialog_id] = data.status
            case CustomerErased():
                self.erased = True
            case CustomerMerged():
                self.absorbed.update(data.absorbed)
            case CustomerAbsorbed():
                self.merged_into = data.into
            case CustomerUnmerged():
                self.absorbed.discard(data.released)
            case CustomerReleased():
                self.merged_into = None
            case CustomerNotDuplicate() if data.withdrawn:
                self.not_duplicates.discard(data.other_customer_id)
            case CustomerNotDuplicate():
                self.not_duplicates.add(data.other_customer_id)

    def apply_subject(self, kind: type[Payload], subject_id: str) -> None:
        """Change the state as an event of `kind`, one of `APPLIED_BY_SUBJECT`,
        about the subject `subject_id` says: all such an event changes. Loading
        a customer calls it with the events table's subject column, without
        decoding the event."""
        if kind is VisitRecorded:
            self.visits.add(subject_id)
        elif kind in _TASK_TO:
            self.tasks[subject_id] = _TASK_TO[kind]
        elif kind is SmsSent:
            self.sms.add(subject_id)
        elif kind is OrderCreated:
            self.orders.add(subject_id)
        elif kind is EmailSent:
            self.emails.add(subject_id)
        elif kind is SegmentJoined:
            self.segments.add(subject_id)
        elif kind is SegmentLeft:
            self.segments.discard(subject_id)
        elif kind is ChatStarted:
            self.dialogs[subject_id] = "new"
        else:
            raise ValueError(f"{kind.__name__} is not applied by its subject alone")

    def record(self, event: InboundEvent, event_id: str, recorded_at: datetime) -> AcceptedEvent:
        """Accept a checked event: apply it and keep it for the next save."""
        data = event.data
        self.apply(data)
        accepted = AcceptedEvent(
            self.id,
            self.version + len(self._pending) + 1,
            recorded_at,
            event_id,
            data.schema_version,
            event,
        )
        self._pending.append(accepted)
        return accepted

    def collect_events(self) -> list[AcceptedEvent]:
        events, self._pending = self._pending, []
        if events:
            self.version = events[-1].originator_version
        return events

    def discard_pending(self) -> None:
        self._pending = []


# Customer's fields that hold sets, dicts and lists (copied by `Customer.clone`).
_CONTAINERS = tuple(f.name for f in fields(Customer) if f.default_factory in (set, dict, list))


def _check_mergeable(field: str, customer_id: str, customer: Customer | None) -> None:
    """A customer can be absorbed: it exists, is not erased, is not merged into
    another and holds no customers of its own (merges stay one level deep, so
    no chain or cycle can form)."""
    if customer is None or not customer.exists:
        raise RuleViolation(field, f"customer {customer_id!r} does not exist", "customer_missing")
    if customer.erased:
        raise RuleViolation(field, f"customer {customer_id!r} is erased", "customer_erased")
    if customer.merged_into is not None:
        raise RuleViolation(
            field,
            f"customer {customer_id!r} is already merged into {customer.merged_into!r}",
            "already_absorbed",
        )
    if customer.absorbed:
        held = ", ".join(sorted(customer.absorbed))
        raise RuleViolation(
            field,
            f"customer {customer_id!r} holds merged customers ({held}); undo those merges "
            "or merge them into the priority customer directly",
            "holds_merged",
        )


def _check_right(event: InboundEvent, policy: RightsPolicy, right: str) -> None:
    if event.actor.kind == "user" and not policy.allows(event.actor.id, right):
        raise RuleViolation(
            "actor.id", f"user {event.actor.id!r} lacks the right {right}", "right_missing"
        )
