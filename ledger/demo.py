"""Realistic demo data: a handful of customers, every event type, a few hundred events.

Deterministic (seeded, fixed event ids, fixed dates), so running the demo twice
stores everything once: the second run reports duplicates.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

DEMO_NAMESPACE = uuid.UUID("5d6f3c1e-2a47-4b8e-9f10-6c0d7e8a9b21")
DEMO_START = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
DEMO_CUSTOMERS = (
    ("cust-1001", "Anna Petrova", "anna@example.com"),
    ("cust-1002", "Ben Okafor", "Ben.Okafor@Example.com"),
    ("cust-1003", "Chloe Martin", "chloe@example.com"),
    ("cust-1004", "Diego Alvarez", "diego@example.com"),
    ("cust-1005", "Emma Schulz", "emma@example.com"),
    ("cust-1006", "Farid Haddad", "farid@example.com"),
)
# Each customer's phone as a CRM user typed it (several notations of German
# numbers: a search by phone must find each however it is typed), by index.
DEMO_PHONES = (
    "+49 30 1234567",
    "030 2345678",
    "+49 (0)176 12345678",
    "0176-2345 6789",
    "+4940123456",
    "0049 89 7654321",
)
FEATURED_CUSTOMER = DEMO_CUSTOMERS[0][0]

_AGENTS = (("u-1", "Maria Lopez"), ("u-2", "Ivan Novak"))
# Who reports what: the shop's analytics reports visits, the mail gateway what
# happened to an email, the messenger gateway chats, the CRM itself the rest.
_INTEGRATIONS = {
    "analytics": ("google-analytics", "Google Analytics"),
    "mail": ("mail-gateway", "Mail gateway"),
    "messenger": ("chat-gateway", "Chat gateway"),
    "sms": ("sms-gateway", "SMS gateway"),
}
# Where a visit came from, and the channel that source is: never "newsletter"
# on "direct".
_VISIT_SOURCES = (
    ("google", "search"),
    ("google", "ppc"),
    ("newsletter", "email"),
    ("facebook.com", "social"),
    ("partner-blog.example.org", "referral"),
    ("(direct)", "direct"),
)
# The campaign a visit from a paid, e-mail or social channel came with.
_CAMPAIGNS = {"ppc": "winter-sale", "email": "newsletter-december", "social": "gift-guide"}
_TASK_TITLES = (
    "Call back about delivery",
    "Send invoice copy",
    "Offer loyalty discount",
    "Check refund status",
    "Confirm new address",
    "Ask for a product review",
)
_SEGMENTS = (("seg-vip", "VIP"), ("seg-newsletter", "Newsletter"), ("seg-churn", "Churn risk"))
_CHANNELS = ("whatsapp", "telegram", "website", "instagram", "facebook")
# Dialogues as they go: the customer writes first (inbound), an agent answers.
_DIALOGUES = (
    (
        "Hi, where is my order?",
        "Hello! Let me check that for you.",
        "Thanks, it was due yesterday.",
        "It left our warehouse this morning and arrives tomorrow.",
        "Great, thank you!",
    ),
    (
        "Can I change the delivery address?",
        "Yes, which address should we use?",
        "Hauptstrasse 5, 10115 Berlin.",
        "Done: the parcel goes to Hauptstrasse 5.",
    ),
    (
        "The jacket is too small. Can I exchange it?",
        "Of course. Which size do you need?",
        "Size L, please.",
        "We sent a return label to your email.",
        "Got it, thanks.",
    ),
)


class _Writer:
    def __init__(self, customer_id: str, name: str, rng: random.Random) -> None:
        self.customer_id = customer_id
        self.name = name
        self.rng = rng
        self.clock = DEMO_START + timedelta(hours=rng.randint(0, 48))
        self.events: list[dict[str, Any]] = []

    def emit(
        self, event_type: str, data: dict[str, Any], actor: str = "user", version: int | None = None
    ) -> None:
        """One event by `actor`: "user" (an agent), "customer" (this customer),
        "system" (the CRM) or one of _INTEGRATIONS; `version`: the contract's
        version the producer writes, when not the current one."""
        self.clock += timedelta(minutes=self.rng.randint(5, 900))
        n = len(self.events)
        who: dict[str, Any]
        if actor == "user":
            uid, name = self.rng.choice(_AGENTS)
            who, source = {"kind": "user", "id": uid, "name": name}, "crm-ui"
        elif actor == "customer":
            # The contract's actor kinds have no customer: what the customer
            # writes comes in through the messenger gateway, in their name.
            source = _INTEGRATIONS["messenger"][0]
            who = {"kind": "integration", "id": f"{source}:{self.customer_id}", "name": self.name}
        elif actor == "system":
            who, source = {"kind": "system", "id": "crm", "name": "CRM"}, "crm"
        else:
            iid, name = _INTEGRATIONS[actor]
            who, source = {"kind": "integration", "id": iid, "name": name}, iid
        self.events.append(
            {
                "event_id": str(uuid.uuid5(DEMO_NAMESPACE, f"{self.customer_id}/{n}")),
                "type": event_type,
                "customer_id": self.customer_id,
                "occurred_at": self.clock.isoformat().replace("+00:00", "Z"),
                "actor": who,
                "source": source,
                "data": data,
                **({"schema_version": version} if version is not None else {}),
            }
        )


def _customer_story(index: int, customer_id: str, name: str, email: str) -> list[dict[str, Any]]:
    rng = random.Random(index)
    w = _Writer(customer_id, name, rng)
    old_phone, phone = f"+49 30 555 {index:04d}", DEMO_PHONES[(index - 1) % len(DEMO_PHONES)]
    w.emit("customer.created", {"card": {"name": name, "email": email, "phone": old_phone}})
    change = {"field": "phone", "old": old_phone, "new": phone}
    w.emit("customer.card_changed", {"changes": [change]})
    seg_member: set[str] = set()
    for seg_id, seg_name in _SEGMENTS[: 2 + index % 2]:
        w.emit(
            "segment.joined",
            {"segment_id": seg_id, "segment_name": seg_name, "reason": "rule match"},
            actor="system",
        )
        seg_member.add(seg_id)
    for v in range(8):
        visit_source, channel = rng.choice(_VISIT_SOURCES)
        visit: dict[str, Any] = {
            "visit_id": f"{customer_id}-v{v}",
            "site": "shop.example.com",
            "source": visit_source,
            "channel": channel,
            "duration_s": rng.randint(20, 1200),
            "pages_viewed": rng.randint(1, 15),
            "landing_page": "https://shop.example.com/" + rng.choice(["", "sale", "new"]),
        }
        campaign = _CAMPAIGNS.get(channel)
        if campaign is not None and v == 0:
            # An older analytics connector still sends version 1 of the contract,
            # with the flat campaign: stored upcast (docs/events.md, "Versions").
            w.emit("visit.recorded", {**visit, "campaign": campaign}, "analytics", version=1)
            continue
        if campaign is not None:
            visit["utm"] = {"source": visit_source, "medium": channel, "campaign": campaign}
        w.emit("visit.recorded", visit, actor="analytics")
    for o in range(3):
        order_id = f"{customer_id}-o{o}"
        w.emit(
            "order.created",
            {
                "order_id": order_id,
                "number": f"A-{index}{o:03d}",
                "status": "new",
                "total": f"{rng.randint(20, 900)}.{rng.randint(0, 99):02d}",
                "currency": "EUR",
            },
        )
        w.emit(
            "order.changed",
            {"order_id": order_id, "changes": [{"field": "status", "old": "new", "new": "paid"}]},
        )
        if o % 2 == 0:
            w.emit(
                "order.changed",
                {
                    "order_id": order_id,
                    "changes": [{"field": "status", "old": "paid", "new": "shipped"}],
                },
            )
    for m in range(6):
        mid = f"{customer_id}-e{m}"
        w.emit(
            "email.sent",
            {
                "message_id": mid,
                "subject": rng.choice(
                    ["Your order has shipped", "Autumn sale: 20% off", "We miss you", "Invoice"]
                ),
                "to": email,
                "campaign_id": f"camp-{m % 3}",
            },
            actor="system",
        )
        w.emit("email.delivered", {"message_id": mid}, actor="mail")
        if m == 5 and index % 2 == 1:
            continue  # the last email stays unopened for some customers
        if rng.random() < 0.15:
            w.emit("email.bounced", {"message_id": mid, "reason": "mailbox full"}, actor="mail")
            continue
        for _ in range(rng.randint(1, 3)):
            w.emit("email.opened", {"message_id": mid}, actor="mail")
        if rng.random() < 0.6:
            w.emit(
                "email.clicked",
                {"message_id": mid, "url": "https://shop.example.com/sale"},
                actor="mail",
            )
    for s in range(3):
        sid = f"{customer_id}-s{s}"
        w.emit(
            "sms.sent",
            {
                "message_id": sid,
                "to": phone,
                "text": "Your parcel arrives tomorrow",
            },
            actor="system",
        )
        w.emit(
            "sms.failed" if s == 2 else "sms.delivered",
            {"message_id": sid, "reason": "unreachable" if s == 2 else None},
            actor="sms",
        )
    for c in range(4):
        w.emit(
            "call.logged",
            {
                "call_id": f"{customer_id}-c{c}",
                "direction": rng.choice(["inbound", "outbound"]),
                "result": rng.choice(["answered", "answered", "missed", "busy"]),
                "duration_s": rng.randint(0, 600),
                "phone": phone,
            },
        )
    for d in range(2):
        did = f"{customer_id}-d{d}"
        w.emit(
            "chat.started",
            {
                "dialog_id": did,
                "channel": _CHANNELS[(index + d) % len(_CHANNELS)],
                "url": f"https://crm.example.com/chats/{did}",
            },
            actor="messenger",
        )
        dialogue = _DIALOGUES[(index + d) % len(_DIALOGUES)]
        for k, text in enumerate(dialogue[: rng.randint(3, len(dialogue))]):
            w.emit(
                "chat.message",
                {
                    "dialog_id": did,
                    "message_id": f"{did}-m{k}",
                    "direction": "inbound" if k % 2 == 0 else "outbound",
                    "text": text,
                },
                actor="customer" if k % 2 == 0 else "user",
            )
            if k == 0:
                w.emit("chat.status_changed", {"dialog_id": did, "status": "in_progress"})
        if d == 0:
            w.emit("chat.status_changed", {"dialog_id": did, "status": "closed"})
    titles = rng.sample(_TASK_TITLES, 4)  # distinct titles per customer
    for t in range(4):
        tid = f"{customer_id}-t{t}"
        w.emit(
            "task.created",
            {
                "task_id": tid,
                "title": titles[t],
                "due_at": (w.clock + timedelta(days=2)).isoformat(),
                "assignee_id": "u-1",
            },
        )
        if t == 0:
            w.emit(
                "task.edited",
                {"task_id": tid, "changes": [{"field": "assignee_id", "old": "u-1", "new": "u-2"}]},
            )
        if t in (1, 2):
            w.emit("task.completed", {"task_id": tid})
        if t == 2:
            w.emit("task.reopened", {"task_id": tid})
        if t == 3:
            w.emit("task.deleted", {"task_id": tid})
    w.emit(
        "note.added", {"note_id": f"{customer_id}-n0", "text": "Prefers WhatsApp, mornings only."}
    )
    w.emit(
        "file.attached",
        {
            "file_id": f"{customer_id}-f0",
            "name": "contract.pdf",
            "size_bytes": 48213,
            "content_type": "application/pdf",
            "url": f"https://files.example.com/{customer_id}/contract.pdf",
        },
    )
    if "seg-churn" in seg_member or index % 3 == 0:
        w.emit(
            "segment.left",
            {
                "segment_id": "seg-newsletter",
                "segment_name": "Newsletter",
                "reason": "unsubscribed",
            },
            actor="system",
        )
    return w.events


def demo_events() -> list[dict[str, Any]]:
    """Every demo event, customers interleaved by time as a CRM would produce them."""
    events: list[dict[str, Any]] = []
    for i, (cid, name, email) in enumerate(DEMO_CUSTOMERS, start=1):
        events.extend(_customer_story(i, cid, name, email))
    # Stable sort: each customer's own order is kept, customers interleave by time.
    events.sort(key=lambda e: e["occurred_at"])
    return events


def demo_ndjson() -> Iterator[str]:
    """The demo events as NDJSON lines, ready for `ledger append`."""
    for event in demo_events():
        yield json.dumps(event)
