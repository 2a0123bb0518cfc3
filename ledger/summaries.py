"""One-line human summaries of events, as the timeline shows them."""

from __future__ import annotations

from typing import Any

from ledger.events import InboundEvent, RecordedEvent


def _changes(changes: list[Any]) -> str:
    parts = [f"{c.field}: {c.old!r} -> {c.new!r}" for c in changes[:3]]
    more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
    return ", ".join(parts) + more


def summarize(event: InboundEvent | RecordedEvent) -> str:
    d: Any = event.data
    t = event.type
    match t:
        case "customer.created":
            name = d.card.get("name") or d.card.get("first_name") or ""
            return f"Customer card created{': ' + str(name) if name else ''}"
        case "customer.card_changed":
            return f"Card changed: {_changes(d.changes)}"
        case "order.created":
            total = f", {d.total} {d.currency or ''}".rstrip() if d.total else ""
            return f"Order {d.number or d.order_id} created ({d.status}{total})"
        case "order.changed":
            return f"Order {d.order_id} changed: {_changes(d.changes)}"
        case "segment.joined":
            return f"Joined segment {d.segment_name or d.segment_id}"
        case "segment.left":
            return f"Left segment {d.segment_name or d.segment_id}"
        case "email.sent":
            return f"Email sent: {d.subject}"
        case "email.delivered":
            return f"Email {d.message_id} delivered"
        case "email.opened":
            return f"Email {d.message_id} opened"
        case "email.clicked":
            return f"Email {d.message_id}: clicked {d.url}"
        case "email.bounced":
            return f"Email {d.message_id} bounced{': ' + d.reason if d.reason else ''}"
        case "sms.sent":
            return f"SMS sent{' to ' + d.to if d.to else ''}{': ' + d.text if d.text else ''}"
        case "sms.delivered":
            return f"SMS {d.message_id} delivered"
        case "sms.failed":
            return f"SMS {d.message_id} failed{': ' + d.reason if d.reason else ''}"
        case "call.logged":
            return f"{d.direction.capitalize()} call, {d.result}, {d.duration_s} s"
        case "chat.started":
            return f"Chat started on {d.channel}"
        case "chat.message":
            text = f": {d.text[:60]}" if d.text else ""
            return f"Chat message ({d.direction}){text}"
        case "chat.status_changed":
            return f"Chat {d.dialog_id} is now {d.status.replace('_', ' ')}"
        case "task.created":
            return f"Task created: {d.title}"
        case "task.edited":
            return f"Task {d.task_id} edited: {_changes(d.changes)}"
        case "task.completed":
            return f"Task {d.task_id} completed"
        case "task.reopened":
            return f"Task {d.task_id} reopened"
        case "task.deleted":
            return f"Task {d.task_id} deleted"
        case "note.added":
            return f"Note: {d.text[:80]}"
        case "file.attached":
            return f"File attached: {d.name} ({d.size_bytes} bytes)"
        case "visit.recorded":
            return f"Site visit from {d.source} ({d.channel}), {d.duration_s} s"
    return t
