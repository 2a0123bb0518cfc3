"""Stores events as their pydantic envelope's JSON (the library's 9.5 has no pydantic mapper).

The stored state is the recorded envelope (spec fields plus `recorded_at` and
`schema_version`); the topic is the event type, so readers can filter on the
column. A custom mapper bypasses the library's `class_version` upcasting: schema
evolution is ours, by `schema_version` in the state.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent

from ledger.domain import CustomerEvent
from ledger.events import PAYLOADS, ContractError, RecordedEvent, parse_recorded_json
from ledger.stores.rows import LedgerStoredEvent

# Columns, not state: see ledger.reading.
_NOT_STORED = {"position", "stream_id", "stream_version"}


def subject_of(event: RecordedEvent) -> str | None:
    """The audit subject of an event, e.g. `order:o-17`; None for card events."""
    payload = PAYLOADS[event.type]
    if payload.subject_kind is None:
        return None
    return f"{payload.subject_kind}:{event.data.subject_id()}"


class LedgerMapper(Mapper[UUID]):
    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        assert isinstance(domain_event, CustomerEvent)
        recorded = domain_event.recorded
        state = recorded.model_dump_json(exclude=_NOT_STORED).encode()
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return LedgerStoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=recorded.type,
            state=state,
            event_id=str(recorded.event_id),
            customer_id=recorded.customer_id,
            subject=subject_of(recorded),
            creates_subject=PAYLOADS[recorded.type].creates_subject,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        try:
            recorded = parse_recorded_json(state)
        except ContractError as exc:
            raise MapperDeserialisationError(
                f"stored event {stored_event.originator_id} v{stored_event.originator_version}"
                f" ({stored_event.topic}) does not match its contract: {exc}"
            ) from exc
        originator_id = stored_event.originator_id
        return CustomerEvent(
            originator_id=originator_id if isinstance(originator_id, UUID) else UUID(originator_id),
            originator_version=stored_event.originator_version,
            timestamp=recorded.recorded_at,
            recorded=recorded,
        )
