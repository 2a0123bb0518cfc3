from __future__ import annotations

from typing import Annotated

from pydantic import Field

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
