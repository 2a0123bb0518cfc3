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
    "schema_version": "the version of the type's contract `data` is written in; absent: the "
    "current one (below). An older version is upcast and stored in the current shape; an "
    "unknown one is rejected",
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

| type | version | `data` | timeline | subject | rules |
|---|---|---|---|---|---|
"""

_VERSIONS = """
## Versions

Every type's contract has a version (the table's second column; 1 unless it
changed). A stored event keeps the version it was stored in: stored events are
immutable and hash-chained, so they are never rewritten. Every reader sees
the current version: an older event's `data` passes through the type's
upcasters (pure functions, one from each version to the next) when it is
read, by the read models and a rebuild, the tabs, the audit history (which
also shows the version as stored), the relay and so the subscriber kit.

- **Producers** may keep sending an older version: they name it in the
  envelope's `schema_version`. The event is upcast, checked against the current
  contract and stored in the current shape, with `sent_schema_version` naming
  the version it came in. Stored so, it is checked once, by the contract it
  is stored under, and needs no upcaster to be read by this or a later
  ledger; the original version stays on record. An unknown or future version
  is rejected naming `schema_version`.
- **The stream** on Kafka carries every event in the current version: the
  header `schema_version` says which; an event stored in an older version
  also carries `stored_schema_version` (header and field).
- **`schemas/versions/`** keeps the JSON Schema of every version ever
  published (`<type>/v<N>.json`); `schemas/events/` holds the current ones.

Changed so far:

| type | version | change | the upcaster from the version before |
|---|---|---|---|
{changed}

### The recipe for the next change

1. Change the payload model in `ledger/events/`, raise its `schema_version`,
   and add to its `upcasters` the function from the version before (pure: a
   JSON object in, a new one out; a unit test with examples).
2. Add the type to `CURRENT_VERSIONS` in `ledger/upcasting.py`.
3. Run `ledger schemas export`: it writes the new version's schema beside the
   old ones (it never rewrites a published version) and the current one in
   `schemas/events/`.
4. Bump the layout `version` of every read model that shows the new field, so
   operators know to run `ledger projections rebuild NAME`.
5. `ledger schemas check` (and the test suite) fails until the published
   schemas, the versions and the upcasters agree: a contract changed without
   a new version, a version without an upcaster from the one before, or an
   upcaster whose output breaks the next version's schema.
"""


# Each version after the first of a type: (type, version, the change, its upcaster).
_CHANGED = (
    (
        "visit.recorded",
        2,
        "the campaign is the object `utm` (`source`, `medium`, `campaign`, `term`, "
        "`content`, all optional)",
        "version 1's flat `campaign` becomes `utm.campaign` (an empty one is left out)",
    ),
)


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
            f"| `{payload.type_name}` | {payload.schema_version} | {_data_cell(payload)} | "
            f"{payload.kind} | "
            f"{_subject_cell(payload)} | {'; '.join(rules_of(payload))} |"
        )
    changed = "\n".join(f"| `{t}` | {v} | {what} | {how} |" for t, v, what, how in _CHANGED)
    lines.append(_VERSIONS.rstrip("\n").replace("{changed}", changed))
    return "\n".join(lines) + "\n"
