"""One-line human summaries of events, as the timeline shows them."""

from __future__ import annotations

from collections.abc import Sequence

from ledger.events import Change, InboundEvent, RecordedEvent
from ledger.events.call import CallLogged
from ledger.events.chat import ChatMessage, ChatStarted, ChatStatusChanged
from ledger.events.customer import CustomerCardChanged, CustomerCreated
from ledger.events.email import (
    EmailBounced,
    EmailClicked,
    EmailDelivered,
    EmailOpened,
    EmailSent,
)
from ledger.events.file import FileAttached
from ledger.events.note import NoteAdded
from ledger.events.order import OrderChanged, OrderCreated
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


def _changes(changes: Sequence[Change]) -> str:
    parts = [f"{c.field}: {c.old!r} -> {c.new!r}" for c in changes[:3]]
    more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
    return ", ".join(parts) + more


def summarize(event: InboundEvent | RecordedEvent) -> str:
    match event.data:
        case CustomerCreated(card=card):
            name = card.get("name") or card.get("first_name") or ""
            return f"Customer card created{': ' + str(name) if name else ''}"
        case CustomerCardChanged(changes=changes):
            return f"Card changed: {_changes(changes)}"
        case OrderCreated() as d:
            total = f", {d.total} {d.currency or ''}".rstrip() if d.total else ""
            return f"Order {d.number or d.order_id} created ({d.status}{total})"
        case OrderChanged() as d:
            return f"Order {d.order_id} changed: {_changes(d.changes)}"
        case SegmentJoined() as d:
            return f"Joined segment {d.segment_name or d.segment_id}"
        case SegmentLeft() as d:
            return f"Left segment {d.segment_name or d.segment_id}"
        case EmailSent() as d:
            return f"Email sent: {d.subject}"
        case EmailDelivered() as d:
            return f"Email {d.message_id} delivered"
        case EmailOpened() as d:
            return f"Email {d.message_id} opened"
        case EmailClicked() as d:
            return f"Email {d.message_id}: clicked {d.url}"
        case EmailBounced() as d:
            return f"Email {d.message_id} bounced{': ' + d.reason if d.reason else ''}"
        case SmsSent() as d:
            return f"SMS sent{' to ' + d.to if d.to else ''}{': ' + d.text if d.text else ''}"
        case SmsDelivered() as d:
            return f"SMS {d.message_id} delivered"
        case SmsFailed() as d:
            return f"SMS {d.message_id} failed{': ' + d.reason if d.reason else ''}"
        case CallLogged() as d:
            return f"{d.direction.capitalize()} call, {d.result}, {d.duration_s} s"
        case ChatStarted() as d:
            return f"Chat started on {d.channel}"
        case ChatMessage() as d:
            text = f": {d.text[:60]}" if d.text else ""
            return f"Chat message ({d.direction}){text}"
        case ChatStatusChanged() as d:
            return f"Chat {d.dialog_id} is now {d.status.replace('_', ' ')}"
        case TaskCreated() as d:
            return f"Task created: {d.title}"
        case TaskEdited() as d:
            return f"Task {d.task_id} edited: {_changes(d.changes)}"
        case TaskCompleted() as d:
            return f"Task {d.task_id} completed"
        case TaskReopened() as d:
            return f"Task {d.task_id} reopened"
        case TaskDeleted() as d:
            return f"Task {d.task_id} deleted"
        case NoteAdded() as d:
            return f"Note: {d.text[:80]}"
        case FileAttached() as d:
            return f"File attached: {d.name} ({d.size_bytes} bytes)"
        case VisitRecorded() as d:
            return f"Site visit from {d.source} ({d.channel}), {d.duration_s} s"
    return event.type
