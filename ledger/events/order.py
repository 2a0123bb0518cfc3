from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated

from pydantic import Field

from ledger.environment import PERSONAL_ORDER_FIELDS_ENV
from ledger.events.common import Changes, DecimalString, Id, Payload


class OrderCreated(Payload):
    type_name = "order.created"
    kind = "orders"
    subject_kind = "order"
    subject_field = "order_id"
    creates_subject = True

    order_id: Id
    number: str | None = None
    status: Annotated[str, Field(min_length=1, max_length=128)]
    total: DecimalString | None = None
    currency: Annotated[str, Field(min_length=1, max_length=16)] | None = None


class OrderChanged(Payload):
    type_name = "order.changed"
    kind = "orders"
    subject_kind = "order"
    subject_field = "order_id"

    order_id: Id
    changes: Changes

    @classmethod
    def personal_change(cls, field: str) -> bool:
        return field in personal_order_fields()


DEFAULT_PERSONAL_ORDER_FIELDS = (
    "address,delivery_address,phone,email,first_name,last_name,name,comment"
)


def personal_order_fields() -> frozenset[str]:
    """The order fields whose changes hold personal data: the deployment's
    comma-separated LEDGER_PERSONAL_ORDER_FIELDS, else the default list. Readers
    do not depend on it (they decrypt whatever was stored encrypted), so widening
    the list later only affects new events."""
    return _fields(os.environ.get(PERSONAL_ORDER_FIELDS_ENV, DEFAULT_PERSONAL_ORDER_FIELDS))


@lru_cache(maxsize=8)
def _fields(text: str) -> frozenset[str]:
    return frozenset(f.strip() for f in text.split(",") if f.strip())
