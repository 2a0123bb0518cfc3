"""The envelope around every event: what producers send and what the ledger stores.

`InboundEvent` is what a producer sends (spec "Envelope"). `RecordedEvent` is the
stored envelope readers get back: the producer's fields plus what the ledger adds
when it stores an event (`recorded_at`, `schema_version`, `position`, and the
stream with its version). Each catalogue type gets its own subclass of both, with
`type` fixed and `data` typed, so JSON Schema and validation are per type.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, PrivateAttr

from ledger.events.common import Actor, Contract, CustomerId, Payload, Timestamp


class InboundEvent(Contract):
    """What a producer sends: the envelope, and the payload of its `type` in `data`."""

    event_id: UUID | None = None
    type: str
    customer_id: CustomerId
    occurred_at: Timestamp
    actor: Actor
    source: str | None = None
    data: Payload
    # The version of the type's contract `data` is written in (absent: the
    # current one); an older version is upcast before it is checked.
    schema_version: int | None = None


class RecordedEvent(Contract):
    """A stored event. `position`, `stream_id` and `stream_version` come from the
    events table's columns, not the stored JSON, so they are optional here: a
    reader fills them in from the row (see `ledger.reading`)."""

    event_id: UUID
    type: str
    customer_id: CustomerId
    occurred_at: AwareDatetime
    actor: Actor
    source: str | None = None
    data: Payload
    recorded_at: AwareDatetime
    schema_version: int
    # The version the producer sent, when older than the one stored (the event
    # was upcast on append).
    sent_schema_version: int | None = None
    # Not stored: the version a reader's upcast document was stored in.
    stored_schema_version: int | None = None
    position: int | None = None
    stream_id: UUID | None = None
    stream_version: int | None = None
    # Not part of the document (nor of its schema): the tenant whose store holds
    # the event, from a Kafka message's `tenant` header; None for a single ledger.
    _tenant: str | None = PrivateAttr(default=None)

    @property
    def tenant(self) -> str | None:
        """The tenant whose store holds this event (`with_tenant`), None for a
        single ledger's event."""
        return self._tenant

    def with_tenant(self, tenant: str | None) -> RecordedEvent:
        """This event, marked as a tenant's (the subscriber kit does, from the
        message's `tenant` header)."""
        self._tenant = tenant
        return self
