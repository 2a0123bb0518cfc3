"""Versions of the event contracts: every read path sees the current shape.

Each payload class declares its current `schema_version` and, for each older
version N, an upcaster from N to N + 1 (`Payload.upcasters`). Stored events are
immutable and hash-chained, so an event stored under an older version stays as
it is; readers bring its `data` up to the current version when they read it
(`upcast_document`, `current_json`). A producer may still send an older version
(the envelope's `schema_version`): it is upcast before validation and stored in
the current shape, with the version it was sent in as `sent_schema_version`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ledger.payloads import payload_classes

# Each type's current version where it is not 1: read by every reader of stored
# events, so kept here rather than asked of the contracts (whose pydantic models
# a tab read never imports). tests/unit/test_upcasting.py holds it to them.
CURRENT_VERSIONS: dict[str, int] = {"visit.recorded": 2}

# The head `ledger.mapper` writes: the version and type are read without parsing
# the whole document (most stored events are of the current version).
_HEAD = re.compile(rb'"schema_version":(\d+),"type":"([^"\\]+)"')


class VersionError(ValueError):
    """A version of a type this ledger does not know (older than 1 or newer than
    the current one)."""


def current_version(event_type: str) -> int:
    """The version of `event_type` this code reads and writes."""
    return CURRENT_VERSIONS.get(event_type, 1)


def upcast_data(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """`data` of `version` of `event_type` as the current version holds it, through
    each upcaster in turn; VersionError for a version not in 1..current."""
    current = current_version(event_type)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= current:
        known = ", ".join(str(v) for v in range(1, current + 1))
        raise VersionError(f"unknown version {version!r} of {event_type} (known: {known})")
    if version == current:
        return data
    payload = payload_classes()[event_type]
    while version < current:
        data = payload.upcasters[version](data)
        version += 1
    return data


def upcast_document(document: dict[str, Any]) -> dict[str, Any]:
    """A stored envelope (decoded JSON) in the current shape: an older version's
    `data` upcast and `schema_version` set to the current one, the version as
    stored kept as `stored_schema_version`. The current version's is returned
    as it is."""
    event_type = document.get("type")
    version = document.get("schema_version")
    if not isinstance(event_type, str) or not isinstance(version, int):
        return document
    current = current_version(event_type)
    if version == current:
        return document
    data = document.get("data")
    upcast = upcast_data(event_type, version, data if isinstance(data, dict) else {})
    return {
        **document,
        "data": upcast,
        "schema_version": current,
        "stored_schema_version": version,
    }


def is_current(state: bytes | str) -> bool:
    """Whether a stored envelope is of its type's current version, from its head."""
    raw = state.encode() if isinstance(state, str) else state
    m = _HEAD.search(raw, 0, 512)
    if m is None:
        return False  # another layout: decide after parsing
    return int(m.group(1)) == current_version(m.group(2).decode())


def current_json(state: bytes) -> bytes:
    """A stored envelope's JSON in the current shape (the same bytes when it is, or
    when it is no JSON envelope at all); VersionError for an unknown version."""
    return upcast_state(state)[0]


def upcast_state(state: bytes) -> tuple[bytes, int | None]:
    """`current_json`, and the version the envelope is stored in when it was upcast
    (None: it was read as it is)."""
    if is_current(state):
        return state, None
    try:
        document = json.loads(state)
    except (ValueError, RecursionError):
        return state, None  # not JSON: the reader's validation says so
    if not isinstance(document, dict):
        return state, None
    upcast = upcast_document(document)
    if upcast is document:
        return state, None
    text = json.dumps(upcast, ensure_ascii=False, separators=(",", ":")).encode()
    return text, upcast["stored_schema_version"]
