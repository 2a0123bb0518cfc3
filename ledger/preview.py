"""A customer's "Previous interactions" straight from the customer's stream.

Used by `ledger demo`; the CRM's tabs read the projected read models instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.application import LedgerApplication
from ledger.domain import CustomerEvent, customer_stream_id
from ledger.events import PAYLOADS
from ledger.summaries import summarize


@dataclass(frozen=True)
class PreviewItem:
    position: int
    occurred_at: datetime
    kind: str
    type: str
    summary: str

    def as_json(self) -> dict[str, Any]:
        return {
            "occurred_at": self.occurred_at.isoformat(),
            "kind": self.kind,
            "type": self.type,
            "summary": self.summary,
        }


def interactions_preview(app: LedgerApplication, customer_id: str, limit: int) -> list[PreviewItem]:
    items = []
    for event in app.events.get(customer_stream_id(customer_id)):
        assert isinstance(event, CustomerEvent)
        r = event.envelope
        items.append(
            PreviewItem(
                event.originator_version, r.occurred_at, PAYLOADS[r.type].kind, r.type, summarize(r)
            )
        )
    items.sort(key=lambda i: (i.occurred_at, i.position), reverse=True)
    return items[:limit]
