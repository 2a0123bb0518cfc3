"""Building producer events for tests."""

from __future__ import annotations

import json
import uuid
from typing import Any


def event(
    event_type: str,
    customer_id: str,
    data: dict[str, Any],
    *,
    occurred_at: str = "2026-10-01T10:00:00+02:00",
    actor: dict[str, Any] | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "customer_id": customer_id,
        "occurred_at": occurred_at,
        "actor": actor or {"kind": "user", "id": "u-1", "name": "Maria"},
        "source": "crm-ui",
        "data": data,
    }
    e.update(extra)
    return e


def ndjson(events: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n"
