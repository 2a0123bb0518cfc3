"""One-line human summaries of events: the one formatter every door shows.

Each line names its subject in words: the task's title, the email's subject, the
SMS's text, the order's number and total, the chat's channel, the file's name.
Events that carry only their subject's id (`task.completed`, `email.opened`,
`sms.delivered`, ...) get those words
from `subject`: the facts earlier events of the subject taught (`learn`), which
the timeline's read model keeps per subject, so its summaries are written once
and a read stays one query. Without them the id stands in.

Field changes read `Label: old → new`, values formatted (`—` for an absent
value, statuses as words, times in UTC); durations read the same everywhere
(`duration_text`). They read the event's `data` as stored JSON (a dict): the
timeline is filled from stored rows, decoded once to plain values (see
projections.base.Envelope).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

Data = Mapping[str, Any]
Facts = Mapping[str, Any]

ABSENT = "—"
_NO_FACTS: Facts = {}

# Field name -> label, where the general rule (`_id`/`_at` dropped, words
# capitalised) would not read well.
_LABELS = {"email": "E-mail", "url": "URL", "sku": "SKU", "vat": "VAT"}
# Fields whose values are statuses (shown as words).
_STATUS_FIELDS = frozenset({"status", "state", "result"})
# Channels spelled as their owners spell them.
_CHANNELS = {
    "whatsapp": "WhatsApp",
    "vk": "VK",
    "ppc": "PPC",
    "sms": "SMS",
}
# Fields whose values are people (user ids): a summary holds them marked
# (`person_ref`), and a reader names them (`name_people_in`, by services.people's
# rule), so a summary shows a person's current name though it was written once.
_PERSON_FIELDS = frozenset({"assignee_id"})
_PERSON_MARK = "\x1f"
_PERSON_REF = re.compile("\x1f([^\x1f]*)\x1f")
# Customers a summary names (a merge's other customers) are marked the same way
# (`customer_ref`), and a reader shows each by its card's name now.
_CUSTOMER_MARK = "\x1e"
_CUSTOMER_REF = re.compile("\x1e([^\x1e]*)\x1e")
_SHOWN_CHANGES = 3
_VALUE_CHARS = 60


def duration_text(seconds: object) -> str:
    """Whole seconds as "42 s", "10 min 13 s" or "1 h 2 min 5 s"; "—" when not a
    number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        return ABSENT
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min {secs} s"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def size_text(size: object) -> str:
    """A byte count as "512 bytes", "1.5 KB", "2.0 MB"."""
    if isinstance(size, bool) or not isinstance(size, int):
        return ABSENT
    if size < 1024:
        return f"{size} byte{'s' * (size != 1)}"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def words(value: object) -> str:
    """A machine word as words: "in_progress" -> "In progress"; "—" for none."""
    if value is None or value == "":
        return ABSENT
    text = str(value).replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def channel_text(channel: object) -> str:
    """A chat or visit channel's name: "telegram" -> "Telegram", "whatsapp" -> "WhatsApp"."""
    if not isinstance(channel, str) or not channel:
        return ABSENT
    return _CHANNELS.get(channel, words(channel))


def utm_text(utm: Mapping[str, object]) -> str:
    """A visit's campaign in words: "spring-sale, from newsletter via email, term
    shoes, content banner-a"; "—" for none."""
    parts = []
    if utm.get("campaign"):
        parts.append(str(utm["campaign"]))
    origin = " ".join(
        f"{word} {utm[key]}"
        for key, word in (("source", "from"), ("medium", "via"))
        if utm.get(key)
    )
    if origin:
        parts.append(origin)
    parts += [f"{key} {utm[key]}" for key in ("term", "content") if utm.get(key)]
    return _clip(", ".join(parts)) if parts else ABSENT


def field_label(field: str) -> str:
    """A field's name as a label: "assignee_id" -> "Assignee", "due_at" -> "Due"."""
    if field in _LABELS:
        return _LABELS[field]
    name = field
    for suffix in ("_id", "_at"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return words(name)


def _clip(text: str, chars: int = _VALUE_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def moment_in(text: str) -> datetime | None:
    """The moment a value written as an RFC 3339 timestamp with its zone holds
    (`2026-10-02T09:30:00+02:00`), None for any other text: a value a door
    may show in its viewer's zone."""
    if len(text) < 16 or text[4] != "-" or "T" not in text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _moment(text: str) -> str | None:
    when = moment_in(text)
    return None if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def person_ref(user_id: str) -> str:
    """A person's id as a summary holds it, for `name_people_in` to name."""
    return f"{_PERSON_MARK}{user_id.replace(_PERSON_MARK, '')}{_PERSON_MARK}"


def people_in(summary: str) -> list[str]:
    """The user ids a summary names (`person_ref`)."""
    return _PERSON_REF.findall(summary) if _PERSON_MARK in summary else []


def customer_ref(customer_id: str) -> str:
    """A customer's id as a summary holds it, for `name_customers_in` to name."""
    return f"{_CUSTOMER_MARK}{customer_id.replace(_CUSTOMER_MARK, '')}{_CUSTOMER_MARK}"


def customers_in(summary: str) -> list[str]:
    """The customer ids a summary names (`customer_ref`)."""
    return _CUSTOMER_REF.findall(summary) if _CUSTOMER_MARK in summary else []


def name_customers_in(summary: str, names: Mapping[str, str | None]) -> str:
    """The summary with each customer it holds shown by name, else by id."""
    if _CUSTOMER_MARK not in summary:
        return summary
    return _CUSTOMER_REF.sub(lambda m: names.get(m.group(1)) or m.group(1), summary)


def name_people_in(summary: str, names: Mapping[str, str | None]) -> str:
    """The summary with each person it holds shown by name, else by id."""
    if _PERSON_MARK not in summary:
        return summary
    return _PERSON_REF.sub(lambda m: names.get(m.group(1)) or m.group(1), summary)


def value_text(field: str, value: object) -> str:
    """A field's value in words: "—" for none, statuses as words, times in UTC,
    yes/no, no quotes, people marked for naming; long values cut short."""
    if value is None or value == "":
        return ABSENT
    if field in _PERSON_FIELDS and isinstance(value, str):
        return person_ref(_clip(value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if field in _STATUS_FIELDS:
            return words(value)
        return _clip(_moment(value) or value)
    if isinstance(value, int | float):
        return str(value)
    return _clip(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))


def change_text(change: Data) -> str:
    """One change as "Label: old → new"."""
    field = str(change["field"])
    old, new = value_text(field, change.get("old")), value_text(field, change.get("new"))
    return f"{field_label(field)}: {old} → {new}"


def changes_text(changes: Sequence[Data]) -> str:
    """The first few changes, "; "-separated, and how many more there are."""
    parts = [change_text(c) for c in changes[:_SHOWN_CHANGES]]
    more = f" (+{len(changes) - _SHOWN_CHANGES} more)" if len(changes) > _SHOWN_CHANGES else ""
    return "; ".join(parts) + more


def _quoted(text: object) -> str:
    return f"“{_clip(str(text), 80)}”"


def _suffix(prefix: str, value: Any) -> str:
    return f"{prefix}{value}" if value else ""


# --- what an event teaches about its subject ----------------------------------

# Subject kind -> the facts kept about it (the order's facts are also its fields).
FACTS: dict[str, tuple[str, ...]] = {
    "task": ("title",),
    "email": ("subject",),
    "order": ("number", "total", "currency", "status"),
    "dialog": ("channel",),
    "sms": ("text", "to"),
}


def learn(event_type: str, data: Data, facts: Facts) -> dict[str, Any] | None:
    """The facts about the event's subject after it, given those before it; None
    when the event teaches nothing new (or its subject has no facts kept)."""
    match event_type:
        case "task.created":
            return {"title": data["title"]}
        case "email.sent":
            return {"subject": data["subject"]}
        case "chat.started":
            return {"channel": data["channel"]}
        case "sms.sent":
            sms = {f: data.get(f) for f in FACTS["sms"]}
            return sms if any(sms.values()) else None
        case "order.created":
            return {f: data.get(f) for f in FACTS["order"]}
        case "task.edited" | "order.changed":
            kept = FACTS["task" if event_type == "task.edited" else "order"]
            changed = {c["field"]: c["new"] for c in data["changes"] if c["field"] in kept}
            return {**facts, **changed} if changed else None
    return None


# --- the summaries --------------------------------------------------------------


def _task(d: Data, facts: Facts) -> str:
    title = facts.get("title")
    return f"Task {_quoted(title)}" if title else f"Task {d['task_id']}"


def _email(d: Data, facts: Facts) -> str:
    subject = facts.get("subject")
    return f"Email {_quoted(subject)}" if subject else f"Email {d['message_id']}"


def _sms(d: Data, facts: Facts) -> str:
    # Its text says which SMS it was; without one, where it went.
    if facts.get("text"):
        return f"SMS {_quoted(facts['text'])}"
    return f"SMS to {facts['to']}" if facts.get("to") else f"SMS {d['message_id']}"


def money(total: object, currency: object) -> str:
    """An amount with its currency ("330.36 EUR"); "—" without an amount."""
    if total is None or total == "":
        return ABSENT
    return f"{total} {currency}" if currency else str(total)


def _order(d: Data, facts: Facts) -> str:
    name = f"Order {facts.get('number') or d.get('number') or d['order_id']}"
    total = facts.get("total", d.get("total"))
    if total is None:
        return name
    return f"{name} ({money(total, facts.get('currency', d.get('currency')))})"


def _chat(d: Data, facts: Facts) -> str:
    channel = facts.get("channel")
    return f"{channel_text(channel)} chat" if channel else f"Chat {d['dialog_id']}"


def _customer_created(d: Data, facts: Facts) -> str:
    card = d["card"]
    name = card.get("name") or card.get("first_name") or ""
    return f"Customer card created{_suffix(': ', name)}"


def _order_created(d: Data, facts: Facts) -> str:
    number = d.get("number") or d["order_id"]
    total = f", {money(d['total'], d.get('currency'))}" if d.get("total") else ""
    return f"Order {number} created ({words(d['status'])}{total})"


def _order_changed(d: Data, facts: Facts) -> str:
    after = learn("order.changed", d, facts) or facts
    currency = after.get("currency")
    changes = [
        {**c, "old": money(c["old"], currency), "new": money(c["new"], currency)}
        if c["field"] == "total" and c["old"] is not None and c["new"] is not None
        else c
        for c in d["changes"]
    ]
    return f"{_order(d, after)} changed: {changes_text(changes)}"


def _sms_sent(d: Data, facts: Facts) -> str:
    return f"SMS sent{_suffix(' to ', d.get('to'))}{_suffix(': ', d.get('text'))}"


def _chat_message(d: Data, facts: Facts) -> str:
    text = d.get("text")
    verb = "received" if d["direction"] == "inbound" else "sent"
    where = f" on {channel_text(facts['channel'])}" if facts.get("channel") else ""
    return f"Chat message {verb}{where}{_suffix(': ', _clip(text, 60) if text else '')}"


def _segment(verb: str) -> Callable[[Data, Facts], str]:
    return lambda d, f: f"{verb} segment {d.get('segment_name') or d['segment_id']}"


def _file(d: Data, facts: Facts) -> str:
    return f"File {_quoted(d['name'])} attached ({size_text(d['size_bytes'])})"


def _call(d: Data, facts: Facts) -> str:
    return f"{words(d['direction'])} call, {d['result']}, {duration_text(d['duration_s'])}"


def _kept(keep: dict[str, str]) -> str:
    fields: dict[str, list[str]] = {}
    for field, owner in keep.items():
        fields.setdefault(owner, []).append(field.replace("_", " "))
    return "; ".join(f"{' and '.join(f)} from {customer_ref(o)}" for o, f in fields.items())


def _visit(d: Data, facts: Facts) -> str:
    channel = channel_text(d["channel"])
    return f"Site visit from {d['source']} ({channel}), {duration_text(d['duration_s'])}"


_SUMMARIES: dict[str, Callable[[Data, Facts], str]] = {
    "customer.created": _customer_created,
    "customer.card_changed": lambda d, f: f"Card changed: {changes_text(d['changes'])}",
    "customer.erased": lambda d, f: (
        f"Personal data erased ({d['reason']}), asked by {d['requested_by']}"
    ),
    "customer.not_duplicate": lambda d, f: (
        f"{'No longer marked' if d.get('withdrawn') else 'Marked'} not a duplicate of "
        f"{customer_ref(d['other_customer_id'])} ({d['reason']})"
    ),
    "customer.merged": lambda d, f: (
        f"Merged with {', '.join(customer_ref(c) for c in d['absorbed'])} ({d['reason']})"
        + (f"; kept {_kept(d['keep'])}" if d.get("keep") else "")
    ),
    "customer.absorbed": lambda d, f: f"Merged into {customer_ref(d['into'])} ({d['reason']})",
    "customer.unmerged": lambda d, f: (
        f"Merge with {customer_ref(d['released'])} undone ({d['reason']})"
    ),
    "customer.released": lambda d, f: (
        f"Merge into {customer_ref(d['from_customer_id'])} undone ({d['reason']})"
    ),
    "order.created": _order_created,
    "order.changed": _order_changed,
    "segment.joined": _segment("Joined"),
    "segment.left": _segment("Left"),
    "email.sent": lambda d, f: f"Email {_quoted(d['subject'])} sent",
    "email.delivered": lambda d, f: f"{_email(d, f)} delivered",
    "email.opened": lambda d, f: f"{_email(d, f)} opened",
    "email.clicked": lambda d, f: f"{_email(d, f)}: link clicked ({d['url']})",
    "email.bounced": lambda d, f: f"{_email(d, f)} bounced{_suffix(': ', d.get('reason'))}",
    "sms.sent": _sms_sent,
    "sms.delivered": lambda d, f: f"{_sms(d, f)} delivered",
    "sms.failed": lambda d, f: f"{_sms(d, f)} failed{_suffix(': ', d.get('reason'))}",
    "call.logged": _call,
    "chat.started": lambda d, f: f"Chat started on {channel_text(d['channel'])}",
    "chat.message": _chat_message,
    "chat.status_changed": lambda d, f: f"{_chat(d, f)}: status {words(d['status'])}",
    "task.created": lambda d, f: f"Task {_quoted(d['title'])} created",
    "task.edited": lambda d, f: f"{_task(d, f)} edited: {changes_text(d['changes'])}",
    "task.completed": lambda d, f: f"{_task(d, f)} completed",
    "task.reopened": lambda d, f: f"{_task(d, f)} reopened",
    "task.deleted": lambda d, f: f"{_task(d, f)} deleted",
    "note.added": lambda d, f: f"Note: {_clip(d['text'], 80)}",
    "file.attached": _file,
    "visit.recorded": _visit,
}


def summarize(event_type: str, data: Data, subject: Facts | None = None) -> str:
    """The summary of an event of `event_type` whose stored `data` is given;
    `subject` holds the facts earlier events taught about its subject (`learn`)."""
    summary = _SUMMARIES.get(event_type)
    return event_type if summary is None else summary(data, subject or _NO_FACTS)
