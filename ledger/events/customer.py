from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from ledger.events.common import Changes, Payload


class CustomerCreated(Payload):
    type_name = "customer.created"
    kind = "card"

    personal = ("card",)

    card: dict[str, Any]


class CustomerCardChanged(Payload):
    type_name = "customer.card_changed"
    kind = "card"

    changes: Changes

    @classmethod
    def personal_change(cls, field: str) -> bool:
        return True


class CustomerErased(Payload):
    """The customer's personal data is erased: its key is destroyed, and no
    event for it is accepted any more (a repeated erasure is a no-op)."""

    type_name = "customer.erased"
    kind = "card"

    reason: Annotated[str, Field(min_length=1, max_length=1000)]
    requested_by: Annotated[str, Field(min_length=1, max_length=256)]
