"""One-line human summaries of events, as the timeline shows them.

They read the event's `data` as stored JSON (a dict): the timeline is filled from
stored rows, decoded once to plain values (see projections.base.Envelope)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Data = Mapping[str, Any]


def _changes(changes: Sequence[Data]) -> str:
    parts = [f"{c['field']}: {c['old']!r} -> {c['new']!r}" for c in changes[:3]]
    more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
    return ", ".join(parts) + more


def _suffix(prefix: str, value: Any) -> str:
    return f"{prefix}{value}" if value else ""


def _customer_created(d: Data) -> str:
    card = d["card"]
    name = card.get("name") or card.get("first_name") or ""
    return f"Customer card created{_suffix(': ', name)}"


def _order_created(d: Data) -> str:
    total = f", {d['total']} {d.get('currency') or ''}".rstrip() if d.get("total") else ""
    return f"Order {d.get('number') or d['order_id']} created ({d['status']}{total})"


def _sms_sent(d: Data) -> str:
    return f"SMS sent{_suffix(' to ', d.get('to'))}{_suffix(': ', d.get('text'))}"


def _chat_message(d: Data) -> str:
    text = d.get("text")
    return f"Chat message ({d['direction']}){_suffix(': ', text[:60] if text else '')}"


_SUMMARIES: dict[str, Callable[[Data], str]] = {
    "customer.created": _customer_created,
    "customer.card_changed": lambda d: f"Card changed: {_changes(d['changes'])}",
    "customer.erased": lambda d: (
        f"Personal data erased ({d['reason']}), asked by {d['requested_by']}"
    ),
    "order.created": _order_created,
    "order.changed": lambda d: f"Order {d['order_id']} changed: {_changes(d['changes'])}",
    "segment.joined": lambda d: f"Joined segment {d.get('segment_name') or d['segment_id']}",
    "segment.left": lambda d: f"Left segment {d.get('segment_name') or d['segment_id']}",
    "email.sent": lambda d: f"Email sent: {d['subject']}",
    "email.delivered": lambda d: f"Email {d['message_id']} delivered",
    "email.opened": lambda d: f"Email {d['message_id']} opened",
    "email.clicked": lambda d: f"Email {d['message_id']}: clicked {d['url']}",
    "email.bounced": lambda d: f"Email {d['message_id']} bounced{_suffix(': ', d.get('reason'))}",
    "sms.sent": _sms_sent,
    "sms.delivered": lambda d: f"SMS {d['message_id']} delivered",
    "sms.failed": lambda d: f"SMS {d['message_id']} failed{_suffix(': ', d.get('reason'))}",
    "call.logged": lambda d: (
        f"{d['direction'].capitalize()} call, {d['result']}, {d['duration_s']} s"
    ),
    "chat.started": lambda d: f"Chat started on {d['channel']}",
    "chat.message": _chat_message,
    "chat.status_changed": lambda d: (
        f"Chat {d['dialog_id']} is now {d['status'].replace('_', ' ')}"
    ),
    "task.created": lambda d: f"Task created: {d['title']}",
    "task.edited": lambda d: f"Task {d['task_id']} edited: {_changes(d['changes'])}",
    "task.completed": lambda d: f"Task {d['task_id']} completed",
    "task.reopened": lambda d: f"Task {d['task_id']} reopened",
    "task.deleted": lambda d: f"Task {d['task_id']} deleted",
    "note.added": lambda d: f"Note: {d['text'][:80]}",
    "file.attached": lambda d: f"File attached: {d['name']} ({d['size_bytes']} bytes)",
    "visit.recorded": lambda d: (
        f"Site visit from {d['source']} ({d['channel']}), {d['duration_s']} s"
    ),
}


def summarize(event_type: str, data: Data) -> str:
    """The summary of an event of `event_type` whose stored `data` is given."""
    summary = _SUMMARIES.get(event_type)
    return event_type if summary is None else summary(data)
