"""Building producer events for tests."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

from ledger.appending.appender import DEFAULT_BATCH_SIZE, Appender
from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.input import read_items
from ledger.rights import ALLOW_ALL, RightsPolicy


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


def append_events(
    app: LedgerApplication,
    events: list[dict[str, Any]],
    *,
    policy: RightsPolicy = ALLOW_ALL,
    batch_size: int = DEFAULT_BATCH_SIZE,
    skip_invalid: bool = False,
) -> AppendReport:
    """Append through the same service `ledger append` uses, as NDJSON."""
    with Appender(app, policy, batch_size=batch_size) as appender:
        return appender.append(read_items(io.StringIO(ndjson(events))), skip_invalid=skip_invalid)


def append_raw(app: LedgerApplication, text: str, *, skip_invalid: bool = False) -> AppendReport:
    """Append producer input given as text (NDJSON or a JSON array), as `ledger append` reads it."""
    with Appender(app) as appender:
        return appender.append(read_items(io.StringIO(text)), skip_invalid=skip_invalid)


def append_ok(app: LedgerApplication, events: list[dict[str, Any]], **kw: Any) -> AppendReport:
    """`append_events` for set-up: every event must be accepted."""
    report = append_events(app, events, **kw)
    assert report.ok, report.rejected[:3]
    return report


def append_to_url(url: str, events: list[dict[str, Any]], **kw: Any) -> AppendReport:
    app = LedgerApplication(parse_database_url(url))
    try:
        return append_ok(app, events, **kw)
    finally:
        app.close()


# Values whose JSON text is easy to get subtly wrong: escapes, line separators,
# floats in exponent notation, -0.0, big integers, nesting.
TRICKY_VALUES: list[Any] = [
    'Zoë «quoted» "x" \\ \u2028 \t 😀',
    0.1,
    1.5e300,
    -0.0,
    12345678901234567,
    True,
    None,
    [1, "two", {"three": 3.25}],
    {"nested": {"deep": ["a", {"b": None}]}},
    [1e-05, 2.5e-05, 1.5e-09, 1e-07, 0.0001, 1e16, 1e-300, -7e-05],
    "e-5 and 0.00001 as text",
]
