from __future__ import annotations

from typing import Any

from ledger.events.common import Changes, Payload


class CustomerCreated(Payload):
    type_name = "customer.created"
    kind = "card"

    card: dict[str, Any]


class CustomerCardChanged(Payload):
    type_name = "customer.card_changed"
    kind = "card"

    changes: Changes
