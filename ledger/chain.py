"""The hash chain that makes stored events tamper-evident.

Each row's hash covers the previous row's hash, its own position and every
column of the row, so changing, deleting, inserting or reordering any stored
event changes every hash after it. See docs/tamper-evidence.md.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

GENESIS_HASH = "0" * 64


def chain_hash(
    previous_hash: str,
    position: int,
    originator_id: UUID | str,
    originator_version: int,
    topic: str,
    state: bytes,
    event_id: str | None,
    customer_id: str | None,
    subject: str | None,
) -> str:
    oid = originator_id.hex if isinstance(originator_id, UUID) else originator_id
    parts = [bytes.fromhex(previous_hash), position.to_bytes(8, "big", signed=True)]
    # Length-prefix every variable field so no two rows can serialise alike.
    for text in (oid, topic, event_id or "", customer_id or "", subject or ""):
        raw = text.encode()
        parts.append(len(raw).to_bytes(4, "big"))
        parts.append(raw)
    parts.append(originator_version.to_bytes(8, "big", signed=True))
    parts.append(len(state).to_bytes(8, "big"))
    parts.append(state)
    return hashlib.sha256(b"".join(parts)).hexdigest()
