"""Merges: which customers stand merged into which, and the card values a merge
chose, so that every tab of a priority customer folds in the rows of the
customers it absorbed (docs/merging.md).

No row of another read model is copied or re-keyed by a merge: each keeps the
customer id its event was sent under. A tab of a priority customer reads the
rows of its `members` (itself and the customers it absorbed); an undo deletes
the merge's rows here and every tab reads as it did, plus what arrived since.

`rm_merges` holds one row per standing merge of an absorbed customer (ids
only). `rm_merge_card` holds, per priority customer and merge, the value each
differing card field kept, sealed as personal under the priority's key, and
the customer it came from: an undo of that customer takes its values back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.sealing import Sealer
from projections.tables import Index, TableSpec

MERGES = TableSpec(
    name="rm_merges",
    columns=(
        ("absorbed_id", "text"),
        ("priority_id", "text"),
        ("merged_us", "int"),
        ("merged_at", "text"),
        ("position", "int"),
    ),
    key=("absorbed_id",),
    indexes=(Index("by_priority", ("priority_id", "absorbed_id")),),
)

MERGE_CARD = TableSpec(
    name="rm_merge_card",
    columns=(
        ("priority_id", "text"),
        ("position", "int"),
        ("field", "text"),
        ("source_id", "text"),
        ("occurred_us", "int"),
        ("value", "text"),
    ),
    key=("priority_id", "position", "field"),
)


class _MergesWriter(Writer):
    """Written as the events come: an undo in the same batch as its merge must
    find the merge's rows."""

    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        self.db = db
        self._merges = tables[MERGES.name]
        self._card = tables[MERGE_CARD.name]
        self._sealer = Sealer(keys)

    def add(self, events: Sequence[Envelope]) -> None:
        for e in events:
            if e.type == "customer.merged":
                self._merged(e)
            elif e.type == "customer.unmerged":
                self._unmerged(e.customer_id, str(e.data["released"]))
            elif e.type == "customer.erased":
                # The kept values were sealed under the erased customer's key.
                self.db.execute(f"DELETE FROM {self._card} WHERE priority_id = ?", (e.customer_id,))

    def _merged(self, e: Envelope) -> None:
        priority, d = e.customer_id, e.data
        self.db.executemany(
            f"INSERT INTO {self._merges} (absorbed_id, priority_id, merged_us, merged_at, "
            "position) VALUES (?, ?, ?, ?, ?) ON CONFLICT (absorbed_id) DO UPDATE SET "
            "priority_id = excluded.priority_id, merged_us = excluded.merged_us, "
            "merged_at = excluded.merged_at, position = excluded.position",
            [(a, priority, e.occurred_us, e.occurred_at, e.position) for a in d["absorbed"]],
        )
        keep: dict[str, str] = d.get("keep") or {}
        card: dict[str, Any] = d.get("card") or {}
        self.db.executemany(
            f"INSERT INTO {self._card} (priority_id, position, field, source_id, occurred_us, "
            "value) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (priority_id, position, field) "
            "DO NOTHING",
            [
                (
                    priority,
                    e.position,
                    field,
                    keep.get(field, priority),
                    e.occurred_us,
                    self._sealer.json_text(priority, json.dumps(value, ensure_ascii=False)),
                )
                for field, value in card.items()
            ],
        )

    def _unmerged(self, priority: str, released: str) -> None:
        self.db.execute(
            f"DELETE FROM {self._merges} WHERE absorbed_id = ? AND priority_id = ?",
            (released, priority),
        )
        # The values taken from the released customer go with it, and a merge
        # none of whose customers is still merged keeps no value at all.
        self.db.execute(
            f"DELETE FROM {self._card} WHERE priority_id = ? AND (source_id = ? OR position "
            f"NOT IN (SELECT position FROM {self._merges} WHERE priority_id = ?))",
            (priority, released, priority),
        )

    def flush(self) -> None:
        pass  # written in add


class MergesProjection(Projection):
    """The standing merges and the card values each chose (see the module's
    docstring); read by every tab of a priority customer."""

    name = "merges"
    tab = False
    tables = (MERGES, MERGE_CARD)
    types = frozenset({"customer.merged", "customer.unmerged", "customer.erased"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _MergesWriter(db, tables, keys)


def members(conn: Connection, customer_id: str) -> tuple[str, ...]:
    """The customers whose rows make up `customer_id`'s tabs: itself, then the
    customers merged into it, by id. An absorbed customer's own are its own."""
    rows = conn.fetchall(
        f"SELECT absorbed_id FROM {MERGES.name} WHERE priority_id = ? ORDER BY absorbed_id",
        (customer_id,),
    )
    return (customer_id, *(str(r[0]) for r in rows))


def merged_into(conn: Connection, customer_id: str) -> str | None:
    """The priority customer `customer_id` stands merged into, or None."""
    row = conn.fetchone(
        f"SELECT priority_id FROM {MERGES.name} WHERE absorbed_id = ?", (customer_id,)
    )
    return None if row is None else str(row[0])


def merged_at(conn: Connection, absorbed_id: str) -> tuple[str, str, int] | None:
    """(priority, when, merge event position) of `absorbed_id`'s standing merge."""
    row = conn.fetchone(
        f"SELECT priority_id, merged_at, position FROM {MERGES.name} WHERE absorbed_id = ?",
        (absorbed_id,),
    )
    return None if row is None else (str(row[0]), str(row[1]), int(row[2]))


def kept_value(conn: Connection, priority_id: str, field: str) -> tuple[tuple[int, int], Any]:
    """The newest value a standing merge kept for the priority's card `field`, with
    its sort key (occurred_us, position); ((-1, -1), None) when none did. `conn`
    must reveal sealed cells."""
    row = conn.fetchone(
        f"SELECT occurred_us, position, value FROM {MERGE_CARD.name} "
        "WHERE priority_id = ? AND field = ? ORDER BY occurred_us DESC, position DESC LIMIT 1",
        (priority_id, field),
    )
    if row is None:
        return (-1, -1), None
    return (int(row[0]), int(row[1])), json.loads(row[2])


def widen(rows: str, count: int) -> str:
    """A tab's rows clause (`... customer_id = ? ...`) for `count` customers at once."""
    if count == 1:
        return rows
    marks = ", ".join("?" * count)
    return rows.replace("customer_id = ?", f"customer_id IN ({marks})", 1)
