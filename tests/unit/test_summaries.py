"""The timeline's one-line summaries: one per event type, from the payload as stored
(validated, then dumped to JSON values as the events table holds it)."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.events import EVENT_TYPES, parse_inbound
from ledger.summaries import (
    channel_text,
    customers_in,
    duration_text,
    field_label,
    learn,
    name_customers_in,
    name_people_in,
    people_in,
    summarize,
    value_text,
    words,
)
from tests.factories import event

CHANGE = {"field": "phone", "old": None, "new": "+49"}
TASK = {"title": "Call back about the invoice"}
EMAIL = {"subject": "Your invoice"}
SMS = {"text": "Your parcel arrives tomorrow", "to": "+49 30 1234567"}
ORDER = {"number": "A-17", "total": "12.50", "currency": "EUR", "status": "new"}

# (type, data, facts known about its subject, the line)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("customer.created", {"card": {"name": "Ann"}}, {}, "Customer card created: Ann"),
    ("customer.created", {"card": {"email": "a@x"}}, {}, "Customer card created"),
    (
        "customer.card_changed",
        {"changes": [CHANGE] * 5},
        {},
        "Card changed: Phone: — → +49; Phone: — → +49; Phone: — → +49 (+2 more)",
    ),
    (
        "customer.erased",
        {"reason": "GDPR art. 17 request", "requested_by": "dpo@example.com"},
        {},
        "Personal data erased (GDPR art. 17 request), asked by dpo@example.com",
    ),
    (
        "customer.merged",
        {"absorbed": ["c-2"], "reason": "same person", "keep": {"phone": "c-2"}},
        {},
        "Merged with c-2 (same person); kept phone from c-2",
    ),
    (
        "customer.absorbed",
        {"into": "c-1", "reason": "same person"},
        {},
        "Merged into c-1 (same person)",
    ),
    (
        "customer.unmerged",
        {"released": "c-2", "reason": "two people"},
        {},
        "Merge with c-2 undone (two people)",
    ),
    (
        "customer.released",
        {"from_customer_id": "c-1", "reason": "two people"},
        {},
        "Merge into c-1 undone (two people)",
    ),
    (
        "customer.not_duplicate",
        {"other_customer_id": "c-2", "reason": "her mother"},
        {},
        "Marked not a duplicate of c-2 (her mother)",
    ),
    (
        "customer.not_duplicate",
        {"other_customer_id": "c-2", "reason": "a mistake", "withdrawn": True},
        {},
        "No longer marked not a duplicate of c-2 (a mistake)",
    ),
    (
        "order.created",
        {"order_id": "o1", "number": "A-17", "status": "new", "total": "12.50", "currency": "EUR"},
        {},
        "Order A-17 created (New, 12.50 EUR)",
    ),
    ("order.created", {"order_id": "o1", "status": "new"}, {}, "Order o1 created (New)"),
    (
        "order.changed",
        {"order_id": "o1", "changes": [{"field": "status", "old": "new", "new": "in_progress"}]},
        ORDER,
        "Order A-17 (12.50 EUR) changed: Status: New → In progress",
    ),
    (
        "order.changed",
        {"order_id": "o1", "changes": [{"field": "total", "old": "12.50", "new": "330.36"}]},
        ORDER,
        "Order A-17 (330.36 EUR) changed: Total: 12.50 EUR → 330.36 EUR",
    ),
    (
        "order.changed",
        {"order_id": "o1", "changes": [CHANGE]},
        {},
        "Order o1 changed: Phone: — → +49",
    ),
    ("segment.joined", {"segment_id": "vip", "segment_name": "VIP"}, {}, "Joined segment VIP"),
    ("segment.left", {"segment_id": "vip"}, {}, "Left segment vip"),
    ("email.sent", {"message_id": "m1", "subject": "Hello"}, {}, "Email “Hello” sent"),
    ("email.delivered", {"message_id": "m1"}, EMAIL, "Email “Your invoice” delivered"),
    ("email.opened", {"message_id": "m1"}, EMAIL, "Email “Your invoice” opened"),
    ("email.opened", {"message_id": "m1"}, {}, "Email m1 opened"),
    (
        "email.clicked",
        {"message_id": "m1", "url": "https://x/a"},
        EMAIL,
        "Email “Your invoice”: link clicked (https://x/a)",
    ),
    (
        "email.bounced",
        {"message_id": "m1", "reason": "full"},
        EMAIL,
        "Email “Your invoice” bounced: full",
    ),
    ("sms.sent", {"message_id": "s1", "to": "+49 1", "text": "hi"}, {}, "SMS sent to +49 1: hi"),
    ("sms.delivered", {"message_id": "s1"}, SMS, "SMS “Your parcel arrives tomorrow” delivered"),
    (
        "sms.delivered",
        {"message_id": "s1"},
        {"text": None, "to": "+49 1"},
        "SMS to +49 1 delivered",
    ),
    ("sms.delivered", {"message_id": "s1"}, {}, "SMS s1 delivered"),
    (
        "sms.failed",
        {"message_id": "s1", "reason": "unreachable"},
        SMS,
        "SMS “Your parcel arrives tomorrow” failed: unreachable",
    ),
    ("sms.failed", {"message_id": "s1"}, {}, "SMS s1 failed"),
    (
        "call.logged",
        {"call_id": "k1", "direction": "inbound", "result": "missed", "duration_s": 0},
        {},
        "Inbound call, missed, 0 s",
    ),
    (
        "call.logged",
        {"call_id": "k1", "direction": "outbound", "result": "answered", "duration_s": 613},
        {},
        "Outbound call, answered, 10 min 13 s",
    ),
    ("chat.started", {"dialog_id": "d1", "channel": "whatsapp"}, {}, "Chat started on WhatsApp"),
    (
        "chat.message",
        {"dialog_id": "d1", "message_id": "cm1", "direction": "outbound", "text": "x" * 70},
        {"channel": "telegram"},
        "Chat message sent on Telegram: " + "x" * 59 + "…",
    ),
    (
        "chat.message",
        {"dialog_id": "d1", "message_id": "cm1", "direction": "inbound", "text": "Hi"},
        {},
        "Chat message received: Hi",
    ),
    (
        "chat.status_changed",
        {"dialog_id": "d1", "status": "in_progress"},
        {"channel": "telegram"},
        "Telegram chat: status In progress",
    ),
    (
        "chat.status_changed",
        {"dialog_id": "d1", "status": "closed"},
        {},
        "Chat d1: status Closed",
    ),
    ("task.created", {"task_id": "t1", "title": "Call back"}, {}, "Task “Call back” created"),
    (
        "task.edited",
        {"task_id": "t1", "changes": [{"field": "assignee_id", "old": "u-2", "new": None}]},
        TASK,
        "Task “Call back about the invoice” edited: Assignee: u-2 → —",
    ),
    (
        "task.edited",
        {
            "task_id": "t1",
            "changes": [{"field": "due_at", "old": None, "new": "2026-10-02T09:30:00+02:00"}],
        },
        TASK,
        "Task “Call back about the invoice” edited: Due: — → 2026-10-02 07:30 UTC",
    ),
    ("task.completed", {"task_id": "t1"}, TASK, "Task “Call back about the invoice” completed"),
    ("task.completed", {"task_id": "t1"}, {}, "Task t1 completed"),
    ("task.reopened", {"task_id": "t1"}, TASK, "Task “Call back about the invoice” reopened"),
    ("task.deleted", {"task_id": "t1"}, TASK, "Task “Call back about the invoice” deleted"),
    ("note.added", {"note_id": "n1", "text": "n" * 90}, {}, "Note: " + "n" * 79 + "…"),
    (
        "file.attached",
        {"file_id": "f1", "name": "a.pdf", "size_bytes": 1536},
        {},
        "File “a.pdf” attached (1.5 KB)",
    ),
    (
        "visit.recorded",
        {"visit_id": "v1", "source": "google", "channel": "search", "duration_s": 613},
        {},
        "Site visit from google (Search), 10 min 13 s",
    ),
]


@pytest.mark.parametrize(("event_type", "data", "facts", "expected"), CASES)
def test_summary(
    event_type: str, data: dict[str, Any], facts: dict[str, Any], expected: str
) -> None:
    validated = parse_inbound(event(event_type, "c1", data))
    line = summarize(event_type, validated.data.model_dump(mode="json"), facts)
    # people and customers unknown: their ids
    assert name_customers_in(name_people_in(line, {}), {}) == expected


def test_every_type_has_a_summary_of_its_own() -> None:
    assert {t for t, _, _, _ in CASES} == set(EVENT_TYPES)


def test_no_summary_shows_python_values_or_raw_statuses() -> None:
    for event_type, data, facts, _ in CASES:
        line = name_customers_in(name_people_in(summarize(event_type, data, facts), {}), {})
        assert "None" not in line and "'" not in line and "in_progress" not in line, line


def test_a_subject_is_named_by_what_earlier_events_taught() -> None:
    facts = learn("task.created", {"task_id": "t1", "title": "Old title"}, {}) or {}
    renamed = {"task_id": "t1", "changes": [{"field": "title", "old": "Old title", "new": "New"}]}
    assert (
        summarize("task.edited", renamed, facts)
        == "Task “Old title” edited: Title: Old title → New"
    )
    facts = learn("task.edited", renamed, facts) or facts
    assert summarize("task.completed", {"task_id": "t1"}, facts) == "Task “New” completed"
    # A change that is not a kept fact teaches nothing.
    other = {"task_id": "t1", "changes": [{"field": "text", "old": None, "new": "x"}]}
    assert learn("task.edited", other, facts) is None
    order = learn("order.created", {"order_id": "o", "status": "new", "total": "1.00"}, {})
    assert order == {"number": None, "total": "1.00", "currency": None, "status": "new"}
    sms = learn("sms.sent", {"message_id": "s1", "to": "+49 1", "text": "Hi"}, {}) or {}
    assert summarize("sms.delivered", {"message_id": "s1"}, sms) == "SMS “Hi” delivered"
    # An SMS sent with neither number nor text teaches nothing: its id stands in.
    assert learn("sms.sent", {"message_id": "s1"}, {}) is None


def test_the_other_customer_of_a_not_duplicate_mark_is_named_when_read() -> None:
    line = summarize("customer.not_duplicate", {"other_customer_id": "c-2", "reason": "sisters"})
    assert customers_in(line) == ["c-2"]
    named = name_customers_in(line, {"c-2": "Olga Petrova"})
    assert named == "Marked not a duplicate of Olga Petrova (sisters)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42, "42 s"), (60, "1 min 0 s"), (613, "10 min 13 s"), (3725, "1 h 2 min 5 s")],
)
def test_one_duration_format(seconds: int, text: str) -> None:
    assert duration_text(seconds) == text


def test_absent_and_odd_values() -> None:
    assert duration_text(None) == "—"
    assert value_text("assignee_id", None) == "—"
    assert value_text("status", "in_progress") == "In progress"
    assert value_text("vip", True) == "yes"
    assert value_text("tags", ["a", "b"]) == '["a", "b"]'
    assert field_label("assignee_id") == "Assignee"
    assert field_label("due_at") == "Due"
    assert field_label("delivery_address") == "Delivery address"
    assert words("in_progress") == "In progress"
    assert channel_text("whatsapp") == "WhatsApp"


def test_people_in_a_summary_are_named_when_read() -> None:
    edited = {
        "task_id": "t1",
        "changes": [{"field": "assignee_id", "old": "u-1", "new": "u-2"}],
    }
    line = summarize("task.edited", edited, TASK)
    assert people_in(line) == ["u-1", "u-2"]
    named = name_people_in(line, {"u-1": "Maria Keller", "u-2": None})
    assert named == "Task “Call back about the invoice” edited: Assignee: Maria Keller → u-2"
