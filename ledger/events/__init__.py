"""Event contracts: the spec's catalogue as pydantic models."""

from ledger.events.catalogue import (
    EVENT_TYPES,
    INBOUND_MODELS,
    PAYLOADS,
    RECORDED_MODELS,
    ContractError,
    FieldError,
    parse_inbound,
    parse_inbound_json,
    parse_recorded_json,
)
from ledger.events.common import KINDS, Actor, Change, Payload
from ledger.events.envelope import InboundEvent, RecordedEvent

__all__ = [
    "EVENT_TYPES",
    "INBOUND_MODELS",
    "KINDS",
    "PAYLOADS",
    "RECORDED_MODELS",
    "Actor",
    "Change",
    "ContractError",
    "FieldError",
    "InboundEvent",
    "Payload",
    "RecordedEvent",
    "parse_inbound",
    "parse_inbound_json",
    "parse_recorded_json",
]
