"""What the ledger's recorders store for one event, beyond the library's four columns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger.chain import chain_hash

EVENTS_TABLE = "ledger_events"
# The channel writers NOTIFY in the transaction of every insert: the library names it
# after the events table. Followers LISTEN on it (`ledger.waiting.ListenWaiter`).
NOTIFY_CHANNEL = EVENTS_TABLE

# Columns in insert order. `event_id`, `customer_id` and `subject` are copies of
# values inside `state`, kept as columns so idempotency, id uniqueness and the
# audit trail's subject lookups are index scans, not payload scans.
EVENT_COLUMNS = (
    "notification_id",
    "originator_id",
    "originator_version",
    "topic",
    "state",
    "event_id",
    "customer_id",
    "subject",
    "creates_subject",
    "chain_hash",
)


@dataclass(frozen=True)
class LedgerStoredEvent(StoredEvent):
    """A stored event that also carries the indexed copies of its envelope fields.

    Plain `StoredEvent`s (the library's own conformance cases write them) are
    stored too, with those columns NULL."""

    event_id: str | None = None
    customer_id: str | None = None
    subject: str | None = None
    creates_subject: bool = False


def chained_rows(
    stored_events: Sequence[StoredEvent], last_position: int, last_hash: str
) -> Iterator[tuple[Any, ...]]:
    """Rows for `EVENT_COLUMNS`, numbered from `last_position + 1` and chained to `last_hash`."""
    position, previous = last_position, last_hash
    for s in stored_events:
        position += 1
        event_id = getattr(s, "event_id", None)
        customer_id = getattr(s, "customer_id", None)
        subject = getattr(s, "subject", None)
        creates = bool(getattr(s, "creates_subject", False))
        previous = chain_hash(
            previous,
            position,
            s.originator_id,
            s.originator_version,
            s.topic,
            s.state,
            event_id,
            customer_id,
            subject,
        )
        yield (
            position,
            s.originator_id,
            s.originator_version,
            s.topic,
            s.state,
            event_id,
            customer_id,
            subject,
            creates,
            previous,
        )
