"""Orders: one row per order (its number, status and total as they are now), and
each order's field-level change history, which the order's own view pages through."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.history import HISTORY_KEY, actor_json, change_rows, history_table
from projections.merges import members, widen
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.sealing import Sealer
from projections.tables import Index, TableSpec
from projections.writing import EntityWriter, insert_rows

# Each order's history is read by order (its own view), never by customer.
ORDER_HISTORY = replace(
    history_table("rm_order_history", subject="order_id"),
    indexes=(Index("by_order", ("order_id", *HISTORY_KEY), unique=True),),
)

ORDERS = TableSpec(
    name="rm_orders",
    columns=(
        ("order_id", "text"),
        ("customer_id", "text"),
        ("created_us", "int"),
        ("position", "int"),
        ("number", "text"),
        ("status", "text"),
        ("total", "text"),
        ("currency", "text"),
        ("created_at", "text"),
        ("changed_at", "text"),
        ("changed_by", "text"),
        ("change_count", "int"),
    ),
    key=("order_id",),
    indexes=(Index("by_customer", ("customer_id", "created_us", "position")),),
)

_CREATED_FIELDS = ("number", "status", "total", "currency")


class _OrdersWriter(EntityWriter):
    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        super().__init__(db, tables[ORDERS.name], ORDERS.column_names, "order_id")
        self._history = tables[ORDER_HISTORY.name]
        self._sealer = Sealer(keys)
        self.rows: list[tuple[Any, ...]] = []  # the history's new rows

    def add(self, events: Sequence[Envelope]) -> None:
        self.load_referenced(events)
        rows = self.rows
        for e in events:
            d = e.data
            if e.type == "order.created":
                given = [(f, None, d.get(f)) for f in _CREATED_FIELDS]
                rows += change_rows(e, [c for c in given if c[2] is not None], d["order_id"])
                self.born(
                    {
                        "order_id": d["order_id"],
                        "customer_id": e.customer_id,
                        "created_us": e.occurred_us,
                        "position": e.position,
                        **{f: d.get(f) for f in _CREATED_FIELDS},
                        "created_at": e.occurred_at,
                        "changed_at": e.occurred_at,
                        "changed_by": actor_json(e.actor),
                        "change_count": 0,
                    }
                )
                continue
            personal = e.payload().personal_change
            changes = [(c["field"], c["old"], c["new"]) for c in d["changes"]]
            rows += change_rows(e, changes, d["order_id"], sealer=self._sealer, personal=personal)
            row = self.get(d["order_id"])
            if row is None:  # the write model never lets this happen; stay robust
                continue
            for field, _, new in changes:
                if field in _CREATED_FIELDS:
                    value = None if new is None else str(new)
                    if personal(field):  # a deployment may count any order field as personal
                        value = self._sealer.text(e.customer_id, value)
                    row[field] = value
            row["changed_at"] = e.occurred_at
            row["changed_by"] = actor_json(e.actor)
            row["change_count"] += 1

    def flush(self) -> None:
        insert_rows(self.db, self._history, ORDER_HISTORY.column_names, self.rows)
        self.rows = []
        super().flush()


class OrdersProjection(Projection):
    """The orders tab's read model: a row per order with its current number, status
    and total, and a row per order field given at creation or changed later (the
    order's history); only the changes the payload marks personal are sealed."""

    name = "orders"
    version = 2  # 2: one row per order (rm_orders); the history is read by order
    tables = (ORDERS, ORDER_HISTORY)
    types = frozenset({"order.created", "order.changed"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _OrdersWriter(db, tables, keys)


ROWS = f"FROM {ORDERS.name} WHERE customer_id = ?"
_COLUMNS = (
    "order_id, number, status, total, currency, created_at, changed_at, changed_by, change_count"
)
PAGED = PagedQuery("orders", f"created_us, position, {_COLUMNS}", ROWS, ("created_us", "position"))


def _order(row: Sequence[Any]) -> dict[str, Any]:
    order_id, number, status, total, currency, created_at, changed_at, by, count = row
    return {
        "order_id": order_id,
        "number": number,
        "status": status,
        "total": total,
        "currency": currency,
        "created_at": created_at,
        "changed_at": changed_at,
        "changed_by": json.loads(by),
        "change_count": count,
    }


def orders_tab(conn: Connection, customer_id: str, page: Page = FIRST_PAGE) -> dict[str, Any]:
    """One page of the customer's orders, newest first, each as it is now."""
    rows, next_cursor = PAGED.fetch(conn, customer_id, page)
    return {
        "customer_id": customer_id,
        "tab": "orders",
        "items": [_order(r) for r in rows],
        "next_cursor": next_cursor,
    }


# One order's changes, newest event first (an event's changes in order). The
# cursor is tagged with the order: another order's is refused.
HISTORY_TAB = "order"
HISTORY_PAGED = PagedQuery(
    HISTORY_TAB,
    "occurred_us, position, seq, field, old, new, occurred_at, actor",
    f"FROM {ORDER_HISTORY.name} WHERE order_id = ?",
    HISTORY_KEY,
    ascending_last=True,
    per_customer=False,
)


def order_history(
    conn: Connection, customer_id: str, order_id: str, page: Page = FIRST_PAGE
) -> dict[str, Any] | None:
    """The customer's order as it is now and one page of its changes, newest first;
    None when the customer has no such order."""
    group = members(conn, customer_id)
    found = conn.fetchone(
        f"SELECT {_COLUMNS} {widen(ROWS, len(group))} AND order_id = ?", (*group, order_id)
    )
    if found is None:
        return None
    rows, next_cursor = HISTORY_PAGED.fetch(conn, order_id, page)
    items = [
        {
            "field": field,
            "old": json.loads(old),
            "new": json.loads(new),
            "occurred_at": occurred_at,
            "actor": json.loads(actor),
        }
        for field, old, new, occurred_at, actor in rows
    ]
    return {
        "customer_id": customer_id,
        **_order(found),
        "items": items,
        "next_cursor": next_cursor,
    }
