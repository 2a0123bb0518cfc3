"""Card: the field-level change history of the customer card."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.history import change_rows, history_from, history_tab, history_table
from projections.merges import kept_value, members, widen
from projections.paging import FIRST_PAGE, Page
from projections.sealing import Sealer, revealing
from projections.writing import AppendWriter

CARD_HISTORY = history_table("rm_card_history", subject=None)


class _CardWriter(AppendWriter):
    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        super().__init__(db, tables[CARD_HISTORY.name], CARD_HISTORY.column_names)
        self._sealer = Sealer(keys)

    def add(self, events: Sequence[Envelope]) -> None:
        rows = self.rows
        for e in events:
            d = e.data
            if e.type == "customer.created":
                given = [(f, None, v) for f, v in d["card"].items() if v is not None]
                rows += change_rows(e, given, sealer=self._sealer)
            else:
                changes = [(c["field"], c["old"], c["new"]) for c in d["changes"]]
                rows += change_rows(e, changes, sealer=self._sealer)


class CardProjection(Projection):
    """The card tab's read model: a row per card field given at creation or changed
    later, old and new values sealed as personal."""

    name = "card"
    tables = (CARD_HISTORY,)
    types = frozenset({"customer.created", "customer.card_changed"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _CardWriter(db, tables, keys)


ROWS = history_from(CARD_HISTORY)


def card_tab(conn: Connection, customer_id: str, page: Page = FIRST_PAGE) -> dict[str, Any]:
    """One page of the customer's card changes, newest first."""
    return history_tab(conn, CARD_HISTORY, "card", customer_id, None, page)


def card_value(conn: Connection, customer_id: str, field: str) -> Any:
    """A card field's current value: the newest change of it (None if never set).
    A priority customer's card is the newest among its own changes, those of the
    customers merged into it, and the values its merges kept (projections.merges)."""
    conn = revealing(conn)
    group = members(conn, customer_id)
    row = conn.fetchone(
        f"SELECT occurred_us, position, new {widen(ROWS, len(group))} AND field = ? "
        "ORDER BY occurred_us DESC, position DESC, seq DESC LIMIT 1",
        (*group, field),
    )
    if len(group) > 1:
        key, kept = kept_value(conn, customer_id, field)
        if key != (-1, -1) and (row is None or key > (int(row[0]), int(row[1]))):
            return kept
    return None if row is None else json.loads(row[2])


def card_text(conn: Connection, customer_id: str, field: str) -> str | None:
    """A card field's current value when it is text (a name, a phone, an
    e-mail), else None."""
    value = card_value(conn, customer_id, field)
    return value if isinstance(value, str) else None


def card_fields(conn: Connection, customer_id: str) -> list[str]:
    """Every field the customer's card has had a value for (a priority
    customer's: those of its merged customers too), by name."""
    group = members(conn, customer_id)
    rows = conn.fetchall(f"SELECT DISTINCT field {widen(ROWS, len(group))} ORDER BY field", group)
    return [str(r[0]) for r in rows]


def card_values(conn: Connection, customer_id: str) -> dict[str, Any]:
    """The card as it is now: each field's current value (None: cleared)."""
    return {f: card_value(conn, customer_id, f) for f in card_fields(conn, customer_id)}
