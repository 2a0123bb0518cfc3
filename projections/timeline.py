"""The timeline ("Previous interactions"): every event of a customer, newest first.

One row per event with what the query filters and sorts on, and the summary.
The envelope itself (`event_id`, `actor`, `data`) is not copied: a page joins
its 50 rows to the events table by position, a primary-key lookup each, and
stored events never change. Copying it would double what a rebuild writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.db import Connection
from ledger.events import KINDS
from ledger.events.catalogue import PAYLOAD_CLASSES
from ledger.reading import states_at
from ledger.summaries import summarize
from projections.base import Envelope, Projection, Tables
from projections.clock import micros
from projections.tables import Index, TableSpec
from projections.writing import insert_rows

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

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


class TimelineProjection(Projection):
    name = "timeline"
    tables = (TIMELINE,)
    payloads = PAYLOAD_CLASSES

    def apply(self, db: Connection, tables: Tables, events: Sequence[Envelope]) -> None:
        rows = [
            (
                e.position,
                e.event.customer_id,
                e.occurred_us,
                e.event.data.kind,
                e.event.type,
                summarize(e.event),
            )
            for e in events
        ]
        insert_rows(db, tables[TIMELINE.name], TIMELINE.column_names, rows)


class BadCursor(ValueError):
    """A `--cursor` that this ledger did not hand out for this customer."""


@dataclass(frozen=True)
class TimelineQuery:
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


def _customer_tag(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode())


def encode_cursor(customer_id: str, occurred_us: int, position: int) -> str:
    raw = json.dumps([1, occurred_us, position, _customer_tag(customer_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(customer_id: str, cursor: str) -> tuple[int, int]:
    """The (occurred_us, position) the next page starts below."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, occurred_us, position, tag = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursor("bad cursor: not a cursor this ledger handed out") from None
    if (
        version != 1
        or not isinstance(occurred_us, int)
        or not isinstance(position, int)
        or not (-(2**63) <= occurred_us < 2**63 and 0 <= position < 2**63)
    ):
        raise BadCursor("bad cursor: not a cursor this ledger handed out")
    if tag != _customer_tag(customer_id):
        raise BadCursor("bad cursor: it belongs to another customer's timeline")
    return occurred_us, position


# Every event of the customer (the card page's count of the tab).
ROWS = f"FROM {TIMELINE.name} WHERE customer_id = ?"


def timeline_tab(conn: Connection, customer_id: str, query: TimelineQuery) -> dict[str, Any]:
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
        params.extend(decode_cursor(customer_id, query.cursor))
    sql += " ORDER BY t.occurred_us DESC, t.position DESC LIMIT ?"
    params.append(query.limit + 1)
    rows = conn.fetchall(sql, params)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    states = states_at(conn, [r[0] for r in rows])
    items = []
    for position, _, kind, event_type, summary in rows:
        stored = json.loads(states[position])
        items.append(
            {
                "position": position,
                "event_id": stored["event_id"],
                "type": event_type,
                "kind": kind,
                "occurred_at": stored["occurred_at"],
                "actor": stored["actor"],
                "summary": summary,
                "data": stored["data"],
            }
        )
    next_cursor = encode_cursor(customer_id, rows[-1][1], rows[-1][0]) if more else None
    return {
        "customer_id": customer_id,
        "tab": "timeline",
        "items": items,
        "next_cursor": next_cursor,
    }
