"""The data-protection services: erasure, access export, master-key management.
The CLI (`ledger customers`, `ledger keys`) and the HTTP API call these."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.application import LedgerApplication
from ledger.audit.history import Selector, iter_history
from ledger.db import Connection
from ledger.input import InputItem
from ledger.keystore import (
    Keyring,
    KeyStatus,
    KeystoreError,
    new_master_key_file,
    read_master_key_file,
)
from ledger.rights import RightsPolicy
from ledger.service import Category, ServiceError, append_items, service_errors
from projections import registry
from projections.runner import catch_up_live
from projections.tabs import TABS, TabRequest, read_tab


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


def init_master_key(path: Path) -> str:
    """Create a new master key file; refuses to overwrite one."""
    try:
        key = new_master_key_file(path)
    except FileExistsError:
        raise ServiceError(
            Category.USAGE, f"{path} exists: a master key is never overwritten"
        ) from None
    except OSError as exc:
        raise ServiceError(Category.USAGE, f"cannot write {path}: {exc.strerror}") from exc
    from ledger.keystore import master_id

    return master_id(key)


def keys_status(app: LedgerApplication) -> KeyStatus:
    with service_errors():
        return Keyring.for_url(app.url).status()


def rotate_master(app: LedgerApplication, new_key_path: Path) -> int:
    """Rewrap every data key under the master key in `new_key_path`."""
    with service_errors():
        try:
            new_key = read_master_key_file(new_key_path)
        except KeystoreError as exc:
            raise ServiceError(Category.USAGE, str(exc)) from exc
        return Keyring.for_url(app.url).rotate_master(new_key)
