"""Customers: erasure and access export (docs/privacy.md). The CLI
(`ledger customers`) and the HTTP API call these."""

from __future__ import annotations

import json
import re
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
from projections.card import card_value
from projections.runner import catch_up_live
from projections.tabs import TABS, TabRequest, customer_exists, read_tab
from services.appending import append_items
from services.errors import Category, ServiceError, service_errors
from services.tabs import catch_up


@dataclass(frozen=True)
class Erasure:
    """An erasure's outcome: whether this call erased the customer, and the
    position of the customer.erased event it stored (None when it stored none)."""

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


@dataclass(frozen=True)
class CustomerMatch:
    """A customer the customer search found."""

    customer_id: str
    name: str | None  # the card's current name


# What can be a customer id at all: the event contracts' bounds, and no control
# characters (the HTTP API's rule for ids; a NUL would reach the database).
_SEARCHABLE_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


def find_customers(conn: Connection, query: str) -> tuple[CustomerMatch, ...]:
    """The customers a search for `query` finds: for now the one whose id it is
    exactly (spaces around it ignored), if any event of theirs is stored. The
    customer page only calls this, so searching by phone, e-mail or name is a
    change here, not in the page."""
    text = query.strip()
    if not _SEARCHABLE_ID.fullmatch(text):
        return ()
    with service_errors():
        catch_up(conn, [registry.get("timeline"), registry.get("card")])
        if not customer_exists(conn, text):
            return ()
        name = card_value(conn, text, "name")
    return (CustomerMatch(text, name if isinstance(name, str) else None),)
