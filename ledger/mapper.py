"""Stores events as their pydantic envelope's JSON (the library's 9.5 has no pydantic mapper).

The stored state is the recorded envelope (spec fields plus `recorded_at` and
`schema_version`); the topic is the event type, so readers can filter on the
column. A custom mapper bypasses the library's `class_version` upcasting: schema
evolution is ours, by `schema_version` in the state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent

from ledger.domain import AcceptedEvent, CustomerEvent, CustomerSnapshot
from ledger.events import (
    PAYLOADS,
    ContractError,
    InboundEvent,
    Payload,
    RecordedEvent,
    parse_recorded_json,
)
from ledger.keystore.keyring import Keyring
from ledger.personal import has_personal, reveal, seal_envelope, seal_spliced
from ledger.stores.rows import EventRow, LedgerStoredEvent

# Columns, not state: see ledger.reading.
_NOT_STORED = {"position", "stream_id", "stream_version", "stored_schema_version"}
# The producer's id and version: the ledger writes its own (the version last,
# as `sent_schema_version`, when the producer sent an older one).
_PRODUCER_ID = {"event_id", "schema_version"}


# An event to store: accepted on append, or read back (and stored again).
ToStore = AcceptedEvent | CustomerEvent


def _not_stored(envelope: RecordedEvent) -> set[str]:
    # A stored envelope without `sent_schema_version` is stored again without it.
    if envelope.sent_schema_version is None:
        return _NOT_STORED | {"sent_schema_version"}
    return _NOT_STORED


def subject_of(event_type: str, data: Payload) -> str | None:
    """The audit subject of an event, e.g. `order:o-17`; None for card events."""
    kind = PAYLOADS[event_type].subject_kind
    if kind is None:
        return None
    return f"{kind}:{data.subject_id()}"


def stored_state(event: ToStore) -> bytes:
    """The stored envelope's JSON: the producer's envelope plus what the ledger adds."""
    envelope = event.envelope
    if isinstance(envelope, RecordedEvent):
        return envelope.model_dump_json(exclude=_not_stored(envelope)).encode()
    # A new event: splice the ledger's fields in front of the validated envelope's
    # JSON rather than building a second model (this is the append hot path).
    # The serializer itself: `model_dump_json` would decode its bytes to text.
    dumped = envelope.__pydantic_serializer__.to_json(envelope, exclude=_PRODUCER_ID)
    body = _head(event).encode() + dumped[1:]
    if envelope.schema_version is not None:  # (_sent_version's first test, inline)
        sent = _sent_version(event)
        if sent is not None:
            body = body[:-1] + b',"sent_schema_version":%d}' % sent
    return body


def _sent_version(event: ToStore) -> int | None:
    """The older version a producer sent a new event in (None: the current one)."""
    envelope = event.envelope
    if isinstance(envelope, RecordedEvent) or envelope.schema_version is None:
        return None
    return None if envelope.schema_version == event.schema_version else envelope.schema_version


@lru_cache(maxsize=16)
def _utc_text(timestamp: datetime) -> str:
    # One `recorded_at` per batch: formatted once, not per event.
    return timestamp.isoformat().replace("+00:00", "Z")


def _head(event: ToStore) -> str:
    recorded_at = _utc_text(event.timestamp)
    return (
        f'{{"event_id":"{event.event_id}","recorded_at":"{recorded_at}",'
        f'"schema_version":{event.schema_version},'
    )


def stored_document(event: ToStore) -> dict[str, Any]:
    """`stored_state` decoded: what personal values are sealed in before the one
    serialisation (members in the same order, so the same JSON)."""
    envelope = event.envelope
    if isinstance(envelope, RecordedEvent):
        return envelope.model_dump(mode="json", exclude=_not_stored(envelope))
    document = {
        "event_id": event.event_id,
        "recorded_at": _utc_text(event.timestamp),
        "schema_version": event.schema_version,
        **envelope.model_dump(mode="json", exclude=_PRODUCER_ID),
    }
    sent = _sent_version(event)
    if sent is not None:
        document["sent_schema_version"] = sent
    return document


SNAPSHOT_TOPIC = "ledger.snapshot.customer"


class LedgerMapper(Mapper[UUID]):
    """Turns customer events and snapshots into the ledger's rows and back: the
    envelope's JSON as stored, personal values sealed with `keyring`."""

    # Set by the application: the keys personal values are sealed and revealed with.
    keyring: Keyring | None = None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if isinstance(domain_event, CustomerSnapshot):
            return self._snapshot_to_stored(domain_event)
        assert isinstance(domain_event, CustomerEvent)
        row = self.event_row(domain_event)
        return LedgerStoredEvent(
            originator_id=row[0],
            originator_version=row[1],
            topic=row[2],
            state=row[3],
            event_id=row[4],
            customer_id=row[5],
            subject=row[6],
            creates_subject=row[7],
        )

    def event_row(
        self, domain_event: ToStore, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> EventRow:
        """The events-table row of a customer event; the nonces of its encrypted
        values come from `random_bytes`."""
        envelope = domain_event.envelope
        data = envelope.data
        state = self._state(domain_event, random_bytes)
        return (
            domain_event.originator_id,
            domain_event.originator_version,
            envelope.type,
            self._seal(state),
            domain_event.event_id,
            envelope.customer_id,
            subject_of(envelope.type, data),
            data.creates_subject,
        )

    def _state(self, event: ToStore, random_bytes: Callable[[int], bytes]) -> bytes:
        """The stored envelope's JSON, its personal values sealed."""
        envelope = event.envelope
        ring = self.keyring
        if ring is None:
            return stored_state(event)
        args = (envelope.type, envelope.customer_id, event.event_id, ring, random_bytes)
        if isinstance(envelope, InboundEvent):
            # A new event (the append path): written once, sealed values spliced in.
            sealed = seal_spliced(stored_state(event), envelope.data, *args)
            if sealed is not None:
                return sealed
        if not has_personal(envelope.type, envelope.data):
            return stored_state(event)
        return seal_envelope(stored_document(event), *args)

    def _snapshot_to_stored(self, snapshot: CustomerSnapshot) -> StoredEvent:
        body = {"timestamp": snapshot.timestamp.isoformat(), "state": snapshot.state}
        return StoredEvent(
            originator_id=snapshot.originator_id,
            originator_version=snapshot.originator_version,
            topic=SNAPSHOT_TOPIC,
            state=self._seal(json.dumps(body).encode()),
        )

    def _seal(self, state: bytes) -> bytes:
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return state

    def _unseal(self, state: bytes) -> bytes:
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        return state

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        state = self._unseal(stored_event.state)
        originator_id = stored_event.originator_id
        if not isinstance(originator_id, UUID):
            originator_id = UUID(originator_id)
        if stored_event.topic == SNAPSHOT_TOPIC:
            body = json.loads(state)
            return CustomerSnapshot(
                originator_id=originator_id,
                originator_version=stored_event.originator_version,
                timestamp=datetime.fromisoformat(body["timestamp"]),
                state=body["state"],
            )
        if self.keyring is not None:
            state = reveal(state, self.keyring)
        try:
            recorded = parse_recorded_json(state)
        except ContractError as exc:
            raise MapperDeserialisationError(
                f"stored event {stored_event.originator_id} v{stored_event.originator_version}"
                f" ({stored_event.topic}) does not match its contract: {exc}"
            ) from exc
        return CustomerEvent(
            originator_id=originator_id,
            originator_version=stored_event.originator_version,
            timestamp=recorded.recorded_at,
            event_id=str(recorded.event_id),
            schema_version=recorded.schema_version,
            envelope=recorded,
        )
