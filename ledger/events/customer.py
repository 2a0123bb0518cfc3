from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from ledger.events.common import Changes, CustomerId, Payload


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


class CustomerNotDuplicate(Payload):
    """A user's mark that this customer and `other_customer_id` are two people, not
    a duplicate (`withdrawn` false), or the withdrawal of such a standing mark
    (`withdrawn` true): a marked pair is never suggested as duplicates again."""

    type_name = "customer.not_duplicate"
    kind = "card"

    other_customer_id: CustomerId
    reason: Annotated[str, Field(min_length=1, max_length=1000)]
    withdrawn: bool = False
