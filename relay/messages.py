"""A stored row as a Kafka message: key, value and headers. Pure: no I/O."""

from __future__ import annotations

import json
import re

from ledger.personal import TamperedValue
from ledger.reading import StoredRow
from ledger.upcasting import VersionError, upcast_state
from relay.errors import RelayFatal

# (name, value): the shape both confluent-kafka and kafka-python take.
Header = tuple[str, str | bytes | None]

# The layout `ledger.mapper.stored_state` writes: the ledger's fields, then the
# producer's envelope. Anchored at the first byte, so these can only be top-level
# keys. Anything else (older layouts, escapes) takes the json.loads path.
_FAST_HEAD = re.compile(
    rb'\{"event_id":"([0-9a-f-]{36})","recorded_at":"[^"\\]*","schema_version":(\d+),'
    rb'"type":"[^"\\]*","customer_id":"([^"\\]*)"'
)


def build_message(row: StoredRow, tenant: bytes | None = None) -> tuple[bytes, bytes, list[Header]]:
    """Key, value and headers for one stored row; `tenant` is the id of the tenant
    whose store holds it (None: a single-ledger deployment).

    The key is the customer id, or `TENANT/CUSTOMER_ID` for a tenant's event (one
    topic carries every tenant; order is per key), and a tenant's messages carry the
    header `tenant` last. Without a tenant the message is what it always was.

    The value is the stored JSON with `position`, `stream_id` and `stream_version`
    spliced in before its closing brace: the stored bytes are already the
    envelope's JSON, and decoding and re-encoding them would cost more than the
    rest of the relay's own work put together."""
    try:
        state = row.state.rstrip()
    except TamperedValue as exc:
        # Never publish what fails authentication: the operator must look.
        raise RelayFatal(f"stored event at position {row.position}: {exc}") from None
    # Stored under an older version of its type: the stream carries every event
    # in the current version, the stored one named (docs/kafka.md).
    try:
        state, stored_version = upcast_state(state)
    except VersionError:
        stored_version = None  # an unknown version: the slow path says what is wrong
    m = _FAST_HEAD.match(state)
    if m is not None and state.endswith(b"}"):
        event_id, schema_version, customer_id = m.group(1), m.group(2), m.group(3)
    else:
        event_id, schema_version, customer_id = _slow_fields(row, state)
    value = b'%s,"position":%d,"stream_id":"%s","stream_version":%d}' % (
        state[:-1],
        row.position,
        str(row.stream_id).encode(),
        row.stream_version,
    )
    headers: list[Header] = [
        ("event_id", event_id),
        ("type", row.type.encode()),
        ("schema_version", schema_version),
        ("position", b"%d" % row.position),
    ]
    if stored_version is not None:
        headers.append(("stored_schema_version", b"%d" % stored_version))
    if tenant is not None:
        headers.append(("tenant", tenant))
        return b"%s/%s" % (tenant, customer_id), value, headers
    return customer_id, value, headers


def _slow_fields(row: StoredRow, state: bytes) -> tuple[bytes, bytes, bytes]:
    try:
        envelope = json.loads(state)
        customer_id = envelope["customer_id"]
        event_id = envelope["event_id"]
        schema_version = int(envelope["schema_version"])
        if not isinstance(customer_id, str) or not isinstance(event_id, str):
            raise TypeError("customer_id and event_id must be strings")
    except (ValueError, KeyError, TypeError) as exc:
        raise RelayFatal(
            f"stored event at position {row.position} is not a plain JSON envelope "
            f"({type(exc).__name__}: {exc}); the relay cannot publish an encrypted or "
            "compressed store"
        ) from None
    if not isinstance(envelope, dict) or not state.endswith(b"}") or "position" in envelope:
        raise RelayFatal(f"stored event at position {row.position} has an unexpected shape")
    return event_id.encode(), b"%d" % schema_version, customer_id.encode()
