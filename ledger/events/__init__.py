"""Event contracts: the spec's catalogue as pydantic models."""

from typing import TYPE_CHECKING, Any

from ledger.events import catalogue
from ledger.events.catalogue import (
    EVENT_TYPES,
    PAYLOADS,
    ContractError,
    FieldError,
    parse_inbound,
    parse_inbound_json,
    parse_recorded_json,
)
from ledger.events.common import Actor, Change, Payload
from ledger.events.envelope import InboundEvent, RecordedEvent
from ledger.kinds import KINDS

# Made on first access, as in the catalogue (see catalogue._envelopes).
if TYPE_CHECKING:
    from ledger.events.catalogue import INBOUND_MODELS, RECORDED_MODELS


def __getattr__(name: str) -> Any:
    if name in ("INBOUND_MODELS", "RECORDED_MODELS"):
        return getattr(catalogue, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
