"""Orders: the field-level change history of the customer's orders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.history import change_rows, history_from, history_tab, history_table
from projections.paging import FIRST_PAGE, Page
from projections.sealing import Sealer
from projections.writing import AppendWriter

ORDER_HISTORY = history_table("rm_order_history", subject="order_id")

_CREATED_FIELDS = ("number", "status", "total", "currency")


class _OrdersWriter(AppendWriter):
    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        super().__init__(db, tables[ORDER_HISTORY.name], ORDER_HISTORY.column_names)
        self._sealer = Sealer(keys)

    def add(self, events: Sequence[Envelope]) -> None:
        rows = self.rows
        for e in events:
            d = e.data
            if e.type == "order.created":
                given = [(f, None, d.get(f)) for f in _CREATED_FIELDS]
                rows += change_rows(e, [c for c in given if c[2] is not None], d["order_id"])
            else:
                changes = [(c["field"], c["old"], c["new"]) for c in d["changes"]]
                rows += change_rows(
                    e,
                    changes,
                    d["order_id"],
                    sealer=self._sealer,
                    personal=e.payload().personal_change,
                )


class OrdersProjection(Projection):
    """The orders tab's read model: a row per order field given at creation or changed
    later; only the changes the payload marks personal are sealed."""

    name = "orders"
    tables = (ORDER_HISTORY,)
    types = frozenset({"order.created", "order.changed"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _OrdersWriter(db, tables, keys)


ROWS = history_from(ORDER_HISTORY)


def orders_tab(conn: Connection, customer_id: str, page: Page = FIRST_PAGE) -> dict[str, Any]:
    """One page of the customer's order changes, newest first, each with its `order_id`."""
    return history_tab(conn, ORDER_HISTORY, "orders", customer_id, "order_id", page)
