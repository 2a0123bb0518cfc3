"""`docs/events.md`, the event catalogue, rendered from the contracts themselves.

`ledger schemas catalogue > docs/events.md` writes it; a test fails when the
committed page differs from what the contracts say.
"""

from __future__ import annotations

from typing import Any

from ledger.domain import rules_of
from ledger.events import InboundEvent, Payload
from ledger.events.catalogue import PAYLOAD_CLASSES

_INTRO = """\
# Event catalogue

Generated from the event contracts (`ledger/events/`) by
`ledger schemas catalogue > docs/events.md`; a test fails when it is stale. The
JSON Schemas in `schemas/` are generated from the same contracts.

## Envelope (what a producer sends)

One JSON object per event; files are NDJSON (one object a line) or a JSON array.
Unknown keys, wrong types, naive timestamps and values outside an enumeration are
rejected, at every level.

| field | required | type | meaning |
|---|---|---|---|
"""

_ENVELOPE_MEANING = {
    "event_id": "chosen by the producer; the same id appended twice is stored once "
    "(a retry counts as a duplicate, not an error). Generated when absent",
    "type": "one of the types below",
    "customer_id": "the customer the event belongs to",
    "occurred_at": "when it happened",
    "actor": "who did it: `kind` (`user`, `system`, `api`, `integration`), `id`, `name`?",
    "source": "free text: `crm-ui`, `api`, `mail-gateway` ...",
    "data": "the type's payload, below",
}

_STORED = """
When it stores an event the ledger adds `position` (global, strictly increasing),
`recorded_at`, `schema_version`, and the stream the event belongs to (`stream_id`,
one per customer) with its `stream_version`. A stored event is never updated or
deleted. Personal values (`docs/privacy.md` lists them per type) are stored
encrypted under the customer's key; after `customer.erased` they read as
`"[erased]"` and no further event for the customer is accepted.

## Types and payloads

A field marked `?` is optional. `changes` is a non-empty list of
`{"field": str, "old": any, "new": any}`. The subject is what the event is about
(the audit trail's `--order`, `--task` ...); a type that creates its subject claims
its id for the customer, and the id must be new in the whole ledger. Every type but
`customer.created` needs its customer to exist; the rules column lists the rest
(`ledger/domain.py` enforces them, given what is stored plus the earlier events of
the same input).

| type | `data` | timeline | subject | rules |
|---|---|---|---|---|
"""


def _describe(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A field's type as a short phrase, from its JSON Schema."""
    options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    p = options[0]
    if "$ref" in p:
        p = defs[p["$ref"].rsplit("/", 1)[-1]]
    if "enum" in p:
        return " / ".join(f"`{v}`" for v in p["enum"])
    kind = p.get("type")
    if kind == "string":
        if p.get("format") == "date-time":
            return "RFC 3339 time with a zone"
        if p.get("format") == "uuid":
            return "UUID"
        if "pattern" in p:
            return "decimal string"
        shortest, longest = p.get("minLength", 0), p.get("maxLength")
        if longest is not None:
            return (
                f"string ({shortest}-{longest} chars)"
                if shortest
                else f"string (up to {longest} chars)"
            )
        return f"string (at least {shortest} chars)" if shortest else "string"
    if kind == "integer":
        return f"integer >= {p['minimum']}" if "minimum" in p else "integer"
    if kind == "array":
        return "changes" if p["items"].get("$ref", "").endswith("/Change") else "list"
    return str(kind or "any")


def _fields(schema: dict[str, Any]) -> list[tuple[str, bool, str]]:
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    return [
        (name, name in required, _describe(prop, defs))
        for name, prop in schema["properties"].items()
    ]


def _data_cell(payload: type[Payload]) -> str:
    parts = []
    for name, required, kind in _fields(payload.model_json_schema()):
        mark = "" if required else "?"
        parts.append(f"`{name}`{mark}: {kind}" if kind != "changes" else f"`{name}`{mark}")
    return ", ".join(parts) if parts else "(nothing)"


def _subject_cell(payload: type[Payload]) -> str:
    if payload.subject_kind is None:
        return "the customer's card"
    text = f"{payload.subject_kind} (`{payload.subject_field}`)"
    return text + ", created here" if payload.creates_subject else text


def render_catalogue() -> str:
    """The text of docs/events.md: the envelope's fields, then one row per event type."""
    lines = [_INTRO.rstrip("\n")]
    for name, required, kind in _fields(InboundEvent.model_json_schema()):
        if name == "data":
            kind = "object"
        meaning = _ENVELOPE_MEANING[name]
        lines.append(f"| `{name}` | {'yes' if required else 'no'} | {kind} | {meaning} |")
    lines.append(_STORED.rstrip("\n"))
    for payload in PAYLOAD_CLASSES:
        lines.append(
            f"| `{payload.type_name}` | {_data_cell(payload)} | {payload.kind} | "
            f"{_subject_cell(payload)} | {'; '.join(rules_of(payload))} |"
        )
    return "\n".join(lines) + "\n"
