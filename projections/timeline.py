"""The timeline ("Previous interactions"): every event of a customer, newest first.

One row per event with what the query filters and sorts on, and the summary.
The envelope itself (`event_id`, `actor`, `data`) is not copied: a page joins
its 50 rows to the events table by position, a primary-key lookup each, and
stored events never change. Copying it would double what a rebuild writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from ledger.kinds import KINDS
from ledger.payloads import payload_classes
from ledger.personal import has_personal
from ledger.reading import states_at
from ledger.summaries import summarize
from projections.base import Envelope, EveryEventType, Projection, Tables, Writer
from projections.clock import micros
from projections.paging import MAX_LIMIT, decode_cursor, encode_cursor
from projections.sealing import Sealer
from projections.tables import Index, TableSpec
from projections.writing import AppendWriter

TIMELINE = TableSpec(
    name="rm_timeline",
    columns=(
        ("position", "int"),
        ("customer_id", "text"),
        ("occurred_us", "int"),
        ("kind", "text"),
        ("type", "text"),
        ("summary", "text"),
    ),
    rowid="position",
    indexes=(Index("by_customer", ("customer_id", "occurred_us", "position"), unique=True),),
)

# The timeline's page is shorter than the other tabs' (paging.DEFAULT_LIMIT): each
# item carries its event's data.
DEFAULT_LIMIT = 50


class _TimelineWriter(AppendWriter):
    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        super().__init__(db, tables[TIMELINE.name], TIMELINE.column_names)
        self._sealer = Sealer(keys)
        self._kind = {name: p.kind for name, p in payload_classes().items()}

    def add(self, events: Sequence[Envelope]) -> None:
        seal = self._sealer.text
        kind = self._kind
        self.rows += [
            (
                e.position,
                e.customer_id,
                e.occurred_us,
                kind[e.type],
                e.type,
                seal(e.customer_id, summarize(e.type, e.data))
                if has_personal(e.type, e.data)
                else summarize(e.type, e.data),
            )
            for e in events
        ]


class TimelineProjection(Projection):
    """The timeline's read model: a row per event of every type, with its kind and
    summary (sealed when the event carries personal values)."""

    name = "timeline"
    tables = (TIMELINE,)
    types = EveryEventType()

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _TimelineWriter(db, tables, keys)


@dataclass(frozen=True)
class TimelineQuery:
    """Which part of the timeline to read: kinds (none: all), a time range, and the page."""

    kinds: tuple[str, ...] = ()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")


# Every event of the customer (the card page's count of the tab).
ROWS = f"FROM {TIMELINE.name} WHERE customer_id = ?"


def timeline_tab(conn: Connection, customer_id: str, query: TimelineQuery) -> dict[str, Any]:
    """One page of the customer's timeline, newest first, each item with its stored
    event's id, actor and data."""
    sql = (
        "SELECT t.position, t.occurred_us, t.kind, t.type, t.summary "
        f"FROM {TIMELINE.name} t WHERE t.customer_id = ?"
    )
    params: list[Any] = [customer_id]
    if query.kinds:
        sql += f" AND t.kind IN ({', '.join('?' * len(query.kinds))})"
        params.extend(query.kinds)
    if query.since is not None:
        sql += " AND t.occurred_us >= ?"
        params.append(micros(query.since))
    if query.until is not None:
        sql += " AND t.occurred_us < ?"
        params.append(micros(query.until))
    if query.cursor is not None:
        sql += " AND (t.occurred_us, t.position) < (?, ?)"
        params.extend(decode_cursor("timeline", customer_id, query.cursor, 2))
    sql += " ORDER BY t.occurred_us DESC, t.position DESC LIMIT ?"
    params.append(query.limit + 1)
    rows = conn.fetchall(sql, params)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    states = states_at(conn, [r[0] for r in rows])
    items = [
        _item(position, kind, event_type, summary, states[position])
        for position, _, kind, event_type, summary in rows
    ]
    next_cursor = (
        encode_cursor("timeline", customer_id, (rows[-1][1], rows[-1][0])) if more else None
    )
    return {
        "customer_id": customer_id,
        "tab": "timeline",
        "items": items,
        "next_cursor": next_cursor,
    }


def timeline_item(conn: Connection, position: int) -> dict[str, Any] | None:
    """The timeline's item for the event at `position` (as its page lists it),
    or None when the read model has no row for it."""
    rows = conn.fetchall(
        f"SELECT kind, type, summary FROM {TIMELINE.name} WHERE position = ?", [position]
    )
    if not rows:
        return None
    kind, event_type, summary = rows[0]
    return _item(position, kind, event_type, summary, states_at(conn, [position])[position])


def customer_known(conn: Connection, customer_id: str) -> bool:
    """Whether the ledger holds any event of the customer (the timeline has
    every event, so a customer without a row there is unknown)."""
    return bool(conn.fetchall(f"SELECT 1 {ROWS} LIMIT 1", [customer_id]))


def _item(position: int, kind: str, event_type: str, summary: str, state: bytes) -> dict[str, Any]:
    stored = json.loads(state)
    return {
        "position": position,
        "event_id": stored["event_id"],
        "type": event_type,
        "kind": kind,
        "occurred_at": stored["occurred_at"],
        "actor": stored["actor"],
        "summary": summary,
        "data": stored["data"],
    }
