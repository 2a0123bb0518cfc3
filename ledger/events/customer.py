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


Reason = Annotated[str, Field(min_length=1, max_length=1000)]


class CustomerMerged(Payload):
    """On the priority customer's stream: it absorbed the customers `absorbed`.
    Nothing stored is copied or changed; read models fold the absorbed customers'
    rows into this customer's tabs while the merge stands. `keep` names, for each
    card field whose values differed, the customer whose value stays, and `card`
    holds those values (personal), so the card shows them."""

    type_name = "customer.merged"
    kind = "card"

    personal = ("card",)

    absorbed: Annotated[list[CustomerId], Field(min_length=1, max_length=20)]
    reason: Reason
    keep: dict[Annotated[str, Field(min_length=1, max_length=256)], CustomerId] = Field(
        default_factory=dict, max_length=100
    )
    card: dict[str, Any] = Field(default_factory=dict, max_length=100)
    confirmed: bool = False


class CustomerAbsorbed(Payload):
    """On each absorbed customer's stream: it was merged into `into`. Events sent
    under its id are still accepted and keep its id; they show on `into`'s card."""

    type_name = "customer.absorbed"
    kind = "card"

    into: CustomerId
    reason: Reason


class CustomerUnmerged(Payload):
    """On the priority customer's stream: the merge of `released` is undone; its
    rows leave this customer's tabs, and the card values chosen from it with it."""

    type_name = "customer.unmerged"
    kind = "card"

    released: CustomerId
    reason: Reason


class CustomerReleased(Payload):
    """On the absorbed customer's stream: its merge into `from_customer_id` is
    undone, and its card and tabs are its own again."""

    type_name = "customer.released"
    kind = "card"

    from_customer_id: CustomerId
    reason: Reason
