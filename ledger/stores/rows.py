"""What the ledger's recorders store for one event, beyond the library's four columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.chain import chain_link

# One event to insert, in `EVENT_COLUMNS` order without the two the write session
# assigns (`notification_id`, `chain_hash`): originator_id, originator_version,
# topic, state, event_id, customer_id, subject, creates_subject. The append path
# builds these tuples directly (no per-event library objects).
EventRow = tuple[UUID | str, int, str, bytes, str | None, str | None, str | None, bool]


@dataclass(frozen=True)
class LedgerStoredEvent(StoredEvent):
    """A stored event that also carries the indexed copies of its envelope fields.

    Plain `StoredEvent`s (the library's own conformance cases write them) are
    stored too, with those columns NULL."""

    event_id: str | None = None
    customer_id: str | None = None
    subject: str | None = None
    creates_subject: bool = False


def event_row(s: StoredEvent) -> EventRow:
    """The row of a library stored event (ours carry the indexed columns)."""
    return (
        s.originator_id,
        s.originator_version,
        s.topic,
        s.state,
        getattr(s, "event_id", None),
        getattr(s, "customer_id", None),
        getattr(s, "subject", None),
        bool(getattr(s, "creates_subject", False)),
    )


def chained_rows(
    rows: Sequence[EventRow], last_position: int, last_hash: str
) -> list[tuple[Any, ...]]:
    """Rows for `EVENT_COLUMNS`, numbered from `last_position + 1` and chained to `last_hash`."""
    position, previous = last_position, bytes.fromhex(last_hash)
    out = []
    for oid, version, topic, state, event_id, customer_id, subject, creates in rows:
        position += 1
        previous = chain_link(
            previous, position, oid, version, topic, state, event_id, customer_id, subject
        )
        out.append(
            (
                position,
                oid,
                version,
                topic,
                state,
                event_id,
                customer_id,
                subject,
                creates,
                previous.hex(),
            )
        )
    return out
