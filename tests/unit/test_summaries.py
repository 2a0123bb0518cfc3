"""The timeline's one-line summaries: one per event type, from the payload as stored
(validated, then dumped to JSON values as the events table holds it)."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.events import EVENT_TYPES, parse_inbound
from ledger.summaries import summarize
from tests.factories import event

CHANGE = {"field": "phone", "old": None, "new": "+49"}

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("customer.created", {"card": {"name": "Ann"}}, "Customer card created: Ann"),
    ("customer.created", {"card": {"email": "a@x"}}, "Customer card created"),
    (
        "customer.card_changed",
        {"changes": [CHANGE] * 5},
        "Card changed: phone: None -> '+49', phone: None -> '+49', phone: None -> '+49' (+2 more)",
    ),
    (
        "customer.erased",
        {"reason": "GDPR art. 17 request", "requested_by": "dpo@example.com"},
        "Personal data erased (GDPR art. 17 request), asked by dpo@example.com",
    ),
    (
        "order.created",
        {"order_id": "o1", "number": "A-17", "status": "new", "total": "12.50", "currency": "EUR"},
        "Order A-17 created (new, 12.50 EUR)",
    ),
    ("order.created", {"order_id": "o1", "status": "new"}, "Order o1 created (new)"),
    (
        "order.changed",
        {"order_id": "o1", "changes": [CHANGE]},
        "Order o1 changed: phone: None -> '+49'",
    ),
    ("segment.joined", {"segment_id": "vip", "segment_name": "VIP"}, "Joined segment VIP"),
    ("segment.left", {"segment_id": "vip"}, "Left segment vip"),
    ("email.sent", {"message_id": "m1", "subject": "Hello"}, "Email sent: Hello"),
    ("email.delivered", {"message_id": "m1"}, "Email m1 delivered"),
    ("email.opened", {"message_id": "m1"}, "Email m1 opened"),
    ("email.clicked", {"message_id": "m1", "url": "https://x/a"}, "Email m1: clicked https://x/a"),
    ("email.bounced", {"message_id": "m1", "reason": "full"}, "Email m1 bounced: full"),
    ("sms.sent", {"message_id": "s1", "to": "+49 1", "text": "hi"}, "SMS sent to +49 1: hi"),
    ("sms.delivered", {"message_id": "s1"}, "SMS s1 delivered"),
    ("sms.failed", {"message_id": "s1"}, "SMS s1 failed"),
    (
        "call.logged",
        {"call_id": "k1", "direction": "inbound", "result": "missed", "duration_s": 0},
        "Inbound call, missed, 0 s",
    ),
    ("chat.started", {"dialog_id": "d1", "channel": "telegram"}, "Chat started on telegram"),
    (
        "chat.message",
        {"dialog_id": "d1", "message_id": "cm1", "direction": "outbound", "text": "x" * 70},
        "Chat message (outbound): " + "x" * 60,
    ),
    (
        "chat.status_changed",
        {"dialog_id": "d1", "status": "in_progress"},
        "Chat d1 is now in progress",
    ),
    ("task.created", {"task_id": "t1", "title": "Call back"}, "Task created: Call back"),
    ("task.edited", {"task_id": "t1", "changes": [CHANGE]}, "Task t1 edited: phone: None -> '+49'"),
    ("task.completed", {"task_id": "t1"}, "Task t1 completed"),
    ("task.reopened", {"task_id": "t1"}, "Task t1 reopened"),
    ("task.deleted", {"task_id": "t1"}, "Task t1 deleted"),
    ("note.added", {"note_id": "n1", "text": "n" * 90}, "Note: " + "n" * 80),
    (
        "file.attached",
        {"file_id": "f1", "name": "a.pdf", "size_bytes": 1024},
        "File attached: a.pdf (1024 bytes)",
    ),
    (
        "visit.recorded",
        {"visit_id": "v1", "source": "google", "channel": "search", "duration_s": 30},
        "Site visit from google (search), 30 s",
    ),
]


@pytest.mark.parametrize(("event_type", "data", "expected"), CASES)
def test_summary(event_type: str, data: dict[str, Any], expected: str) -> None:
    validated = parse_inbound(event(event_type, "c1", data))
    assert summarize(event_type, validated.data.model_dump(mode="json")) == expected


def test_every_type_has_a_summary_of_its_own() -> None:
    assert {t for t, _, _ in CASES} == set(EVENT_TYPES)
