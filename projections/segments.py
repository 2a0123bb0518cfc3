"""Segments: the history of joins and leaves, and the memberships they add up to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.events.segment import SegmentJoined, SegmentLeft
from projections.base import Envelope, Projection, Tables
from projections.clock import iso
from projections.history import actor_json
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.tables import Index, TableSpec
from projections.writing import insert_rows

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


class SegmentsProjection(Projection):
    name = "segments"
    tables = (SEGMENT_HISTORY, SEGMENT_MEMBERS)
    payloads = (SegmentJoined, SegmentLeft)

    def apply(self, db: Connection, tables: Tables, events: Sequence[Envelope]) -> None:
        history = []
        # Only the batch's last word per membership matters: the write model
        # allows join and leave only in turn.
        member: dict[tuple[str, str], bool] = {}
        for e in events:
            d = e.event.data
            assert isinstance(d, SegmentJoined | SegmentLeft)
            joined = isinstance(d, SegmentJoined)
            history.append(
                (
                    e.position,
                    e.event.customer_id,
                    e.occurred_us,
                    d.segment_id,
                    d.segment_name,
                    "joined" if joined else "left",
                    iso(e.event.occurred_at),
                    actor_json(e.event.actor),
                )
            )
            member[(e.event.customer_id, d.segment_id)] = joined
        insert_rows(db, tables[SEGMENT_HISTORY.name], SEGMENT_HISTORY.column_names, history)
        members = tables[SEGMENT_MEMBERS.name]
        db.executemany(
            f"INSERT INTO {members} (customer_id, segment_id) VALUES (?, ?) "
            "ON CONFLICT (customer_id, segment_id) DO NOTHING",
            [key for key, joined in member.items() if joined],
        )
        db.executemany(
            f"DELETE FROM {members} WHERE customer_id = ? AND segment_id = ?",
            [key for key, joined in member.items() if not joined],
        )


ROWS = f"FROM {SEGMENT_HISTORY.name} WHERE customer_id = ?"
PAGED = PagedQuery(
    "segments",
    "occurred_us, position, segment_id, segment_name, change, occurred_at, actor",
    ROWS,
    ("occurred_us", "position"),
)


def segments_tab(conn: Connection, customer_id: str, page: Page = FIRST_PAGE) -> dict[str, Any]:
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
    memberships = [
        r[0]
        for r in conn.fetchall(
            f"SELECT segment_id FROM {SEGMENT_MEMBERS.name} WHERE customer_id = ? "
            "ORDER BY segment_id",
            (customer_id,),
        )
    ]
    return {
        "customer_id": customer_id,
        "tab": "segments",
        "items": items,
        "next_cursor": next_cursor,
        # Whole on every page: what the customer belongs to now.
        "memberships": memberships,
    }
