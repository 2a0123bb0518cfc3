"""Customers: erasure and access export (docs/privacy.md). The CLI
(`ledger customers`) and the HTTP API call these."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.application import LedgerApplication
from ledger.audit.history import Selector, iter_history
from ledger.db import Connection
from ledger.input import InputItem
from ledger.keystore.keyring import Keyring
from ledger.rights import RightsPolicy
from projections import registry
from projections.runner import catch_up_live
from projections.tabs import TABS, TabRequest, read_tab
from services.appending import append_items
from services.errors import Category, ServiceError, service_errors


@dataclass(frozen=True)
class Erasure:
    customer_id: str
    erased: bool  # False: it already was (a repeated erasure is a no-op)
    position: int | None


def erase_customer(
    app: LedgerApplication,
    policy: RightsPolicy,
    customer_id: str,
    reason: str,
    requested_by: str,
) -> Erasure:
    """Append customer.erased; its key is destroyed in the same transaction
    (ledger.appending), so from the commit on every reader shows it erased."""
    with service_errors():
        customer = app.customer(customer_id)
        if not customer.exists:
            raise ServiceError(Category.NOT_FOUND, f"customer {customer_id!r} does not exist")
        if customer.erased:
            return Erasure(customer_id, False, None)
        event = {
            "type": "customer.erased",
            "customer_id": customer_id,
            "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "actor": {"kind": "user", "id": requested_by},
            "data": {"reason": reason, "requested_by": requested_by},
        }
        report = append_items(app, policy, [InputItem(1, json.dumps(event))])
        if not report.ok:
            raise ServiceError(Category.REJECTED, str(report.rejected[0]))
        # SQLite: the key's old page leaves the WAL too.
        Keyring.for_url(app.url).checkpoint()
    return Erasure(customer_id, report.appended > 0, report.last_position)


def export_customer(conn: Connection, customer_id: str) -> dict[str, Any]:
    """An access request's answer: every event of the customer with personal
    values decrypted, and the current state of every tab."""
    with service_errors():
        events = [e.as_json() for e in iter_history(conn, Selector("customer", customer_id))]
        if not events:
            raise ServiceError(Category.NOT_FOUND, f"customer {customer_id!r} has no events")
        catch_up_live(conn, [registry.get(name) for name in registry.NAMES])
        tabs = {
            tab: read_tab(conn, TabRequest(customer_id, tab)) for tab in TABS if tab != "timeline"
        }
    return {
        "customer_id": customer_id,
        "exported_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "events": events,
        "summary": tabs,
    }
