"""Segments: the history of joins and leaves, and the memberships they add up to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.history import actor_json
from projections.merges import members
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.tables import Index, TableSpec
from projections.writing import AppendWriter

SEGMENT_HISTORY = TableSpec(
    name="rm_segment_history",
    columns=(
        ("position", "int"),
        ("customer_id", "text"),
        ("occurred_us", "int"),
        ("segment_id", "text"),
        ("segment_name", "text"),
        ("change", "text"),
        ("occurred_at", "text"),
        ("actor", "text"),
    ),
    rowid="position",
    indexes=(Index("by_customer", ("customer_id", "occurred_us", "position"), unique=True),),
)
SEGMENT_MEMBERS = TableSpec(
    name="rm_segment_members",
    columns=(("customer_id", "text"), ("segment_id", "text")),
    key=("customer_id", "segment_id"),
)


class _SegmentsWriter(AppendWriter):
    def __init__(self, db: Connection, tables: Tables) -> None:
        super().__init__(db, tables[SEGMENT_HISTORY.name], SEGMENT_HISTORY.column_names)
        self._members = tables[SEGMENT_MEMBERS.name]
        # Only the last word per membership since the last flush matters: the
        # write model allows join and leave only in turn.
        self._member: dict[tuple[str, str], bool] = {}

    def add(self, events: Sequence[Envelope]) -> None:
        for e in events:
            d = e.data
            joined = e.type == "segment.joined"
            self.rows.append(
                (
                    e.position,
                    e.customer_id,
                    e.occurred_us,
                    d["segment_id"],
                    d.get("segment_name"),
                    "joined" if joined else "left",
                    e.occurred_at,
                    actor_json(e.actor),
                )
            )
            self._member[(e.customer_id, d["segment_id"])] = joined

    def flush(self) -> None:
        super().flush()
        member, self._member = self._member, {}
        self.db.executemany(
            f"INSERT INTO {self._members} (customer_id, segment_id) VALUES (?, ?) "
            "ON CONFLICT (customer_id, segment_id) DO NOTHING",
            [key for key, joined in member.items() if joined],
        )
        self.db.executemany(
            f"DELETE FROM {self._members} WHERE customer_id = ? AND segment_id = ?",
            [key for key, joined in member.items() if not joined],
        )


class SegmentsProjection(Projection):
    """The segments tab's read model: the history of joins and leaves, and the
    customer's current memberships."""

    name = "segments"
    tables = (SEGMENT_HISTORY, SEGMENT_MEMBERS)
    types = frozenset({"segment.joined", "segment.left"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _SegmentsWriter(db, tables)


ROWS = f"FROM {SEGMENT_HISTORY.name} WHERE customer_id = ?"
PAGED = PagedQuery(
    "segments",
    "occurred_us, position, segment_id, segment_name, change, occurred_at, actor",
    ROWS,
    ("occurred_us", "position"),
)


def segments_tab(conn: Connection, customer_id: str, page: Page = FIRST_PAGE) -> dict[str, Any]:
    """One page of the customer's segment joins and leaves, newest first, and every
    segment the customer belongs to now."""
    rows, next_cursor = PAGED.fetch(conn, customer_id, page)
    items = [
        {
            "segment_id": segment_id,
            "segment_name": segment_name,
            "change": change,
            "occurred_at": occurred_at,
            "actor": json.loads(actor),
        }
        for segment_id, segment_name, change, occurred_at, actor in rows
    ]
    # Each membership with the name its latest join or leave gave the segment.
    member_of = [
        {"segment_id": segment_id, "segment_name": segment_name}
        for segment_id, segment_name in membership_names(conn, customer_id)
    ]
    memberships = [m["segment_id"] for m in member_of]
    return {
        "customer_id": customer_id,
        "tab": "segments",
        "items": items,
        "next_cursor": next_cursor,
        # Whole on every page: what the customer belongs to now.
        "memberships": memberships,
        "member_of": member_of,
    }


def membership_names(conn: Connection, customer_id: str) -> list[tuple[str, str | None]]:
    """Each segment the customer belongs to now, with the name its latest join or
    leave gave it (None when no event named it), ordered by id."""
    group = members(conn, customer_id)
    marks = ", ".join("?" * len(group))
    # A priority customer is in every segment one of its merged customers is in,
    # under the name the newest join or leave of any of them gave it.
    rows = conn.fetchall(
        f"SELECT m.segment_id, (SELECT h.segment_name FROM {SEGMENT_HISTORY.name} h "
        f"WHERE h.customer_id IN ({marks}) AND h.segment_id = m.segment_id "
        "AND h.segment_name IS NOT NULL ORDER BY h.occurred_us DESC, h.position DESC LIMIT 1) "
        f"FROM (SELECT DISTINCT segment_id FROM {SEGMENT_MEMBERS.name} "
        f"WHERE customer_id IN ({marks})) m ORDER BY m.segment_id",
        (*group, *group),
    )
    return [(segment_id, name) for segment_id, name in rows]
