"""Reading stored events in position order, for projectors, the relay and auditors.

Every query of the events table outside the recorders, the append engine's batched
lookups (ledger.lookups) and the audit trail is here.

Positions are assigned under the events table's write lock (see ledger.stores),
so position order is commit order: a reader that has seen position P has seen
everything at or below P, and `WHERE notification_id > P` never skips an event
committed later. Positions may still have holes; readers must not assume +1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING
from uuid import UUID

from ledger.db import Connection, Queries, look_up, pg_array, pg_text_array
from ledger.keystore.keyring import Keyring
from ledger.lookups import STREAM_VERSIONS, stream_keys, versions
from ledger.personal import reveal
from ledger.stores.layout import EVENTS_TABLE

# The event contracts (pydantic models of the whole catalogue) are imported only
# by readers that decode events: a tab read of the read models never does.
if TYPE_CHECKING:
    from ledger.events import RecordedEvent


@dataclass(frozen=True)
class StoredRow:
    """One row of the events table, undecoded: for readers that only need the JSON.

    `stored` is the row's bytes as stored (personal values encrypted); `state` the
    envelope a reader may see (decrypted, or shown as erased; docs/privacy.md),
    raising TamperedValue when a stored value fails authentication."""

    position: int
    stream_id: UUID
    stream_version: int
    type: str
    stored: bytes
    ring: Keyring | None = None

    @cached_property
    def state(self) -> bytes:
        return self.stored if self.ring is None else reveal(self.stored, self.ring)

    def decode(self) -> RecordedEvent:
        from ledger.events import parse_recorded_json

        event = parse_recorded_json(self.state)
        return event.model_copy(
            update={
                "position": self.position,
                "stream_id": self.stream_id,
                "stream_version": self.stream_version,
            }
        )


def _stream_id(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def read_rows(conn: Connection, after: int, limit: int) -> list[StoredRow]:
    """Up to `limit` rows with position > `after`, in position order."""
    rows = conn.fetch_binary(
        f"SELECT notification_id, originator_id, originator_version, topic, state, customer_id "
        f"FROM {EVENTS_TABLE} WHERE notification_id > ? ORDER BY notification_id LIMIT ?",
        (after, limit),
    )
    ring = Keyring.for_url(conn.url)
    # One key query for the batch: revealing row by row would ask once per customer.
    ring.warm(r[5] for r in rows if r[5] is not None)
    return [StoredRow(r[0], _stream_id(r[1]), r[2], r[3], bytes(r[4]), ring) for r in rows]


LeanRow = tuple[int, str, bytes]


def read_lean(conn: Connection, after: int, limit: int) -> list[LeanRow]:
    """(position, type, stored state) of up to `limit` rows with position > `after`,
    in position order: the least a bulk reader needs (a rebuild's load), with no
    object per row; the state as stored (personal values encrypted)."""
    rows = conn.fetchall(
        f"SELECT notification_id, topic, state FROM {EVENTS_TABLE} "
        "WHERE notification_id > ? ORDER BY notification_id LIMIT ?",
        (after, limit),
    )
    return rows  # both drivers return the blob as bytes


def iter_rows(conn: Connection, after: int = 0, page: int = 1000) -> Iterator[StoredRow]:
    """Every row after `after`, read a page at a time (constant memory)."""
    while True:
        rows = read_rows(conn, after, page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].position


def read_events(conn: Connection, after: int, limit: int) -> list[RecordedEvent]:
    """Up to `limit` events with position > `after`, decoded and checked, in position order."""
    return [row.decode() for row in read_rows(conn, after, limit)]


def head_position(conn: Connection) -> int:
    """The highest position stored; 0 for an empty ledger."""
    row = conn.fetchone(f"SELECT MAX(notification_id) FROM {EVENTS_TABLE}")
    return int(row[0]) if row and row[0] is not None else 0


def count_after(conn: Connection, after: int) -> int:
    """How many events are stored with position > `after` (a follower's lag)."""
    row = conn.fetchone(f"SELECT COUNT(*) FROM {EVENTS_TABLE} WHERE notification_id > ?", (after,))
    return int(row[0]) if row else 0


def recorded_at_after(conn: Connection, after: int) -> datetime | None:
    """When the first event after `after` was stored; None if there is none."""
    rows = read_rows(conn, after, 1)
    if not rows:
        return None
    return datetime.fromisoformat(json.loads(rows[0].stored)["recorded_at"])


def states_at(conn: Connection, positions: Sequence[int]) -> dict[int, bytes]:
    """The stored JSON of the events at `positions` (key lookups; events never change)."""
    if not positions:
        return {}
    marks = ", ".join("?" * len(positions))
    rows = conn.fetchall(
        f"SELECT notification_id, state FROM {EVENTS_TABLE} WHERE notification_id IN ({marks})",
        list(positions),
    )
    ring = Keyring.for_url(conn.url)
    return {int(r[0]): reveal(bytes(r[1]), ring) for r in rows}


def position_of(conn: Connection, event_id: str) -> int | None:
    """The position of the event stored under a producer's `event_id`, if any."""
    rows = conn.fetchall(
        f"SELECT notification_id FROM {EVENTS_TABLE} WHERE event_id = ?", [event_id]
    )
    return int(rows[0][0]) if rows else None


def events_table_exists(conn: Connection) -> bool:
    """Whether the events table exists (PostgreSQL: in the URL's schema)."""
    if conn.kind == "sqlite":
        row = conn.fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (EVENTS_TABLE,)
        )
        return row is not None
    # to_regclass resolves through search_path, which Connection sets to the URL's schema.
    row = conn.fetchone("SELECT to_regclass(?)", (EVENTS_TABLE,))
    return row is not None and row[0] is not None


def positions_between(conn: Queries, first: int, last: int | None) -> list[int]:
    """The positions stored from `first` to `last` (inclusive), in order."""
    rows = conn.fetchall(
        f"SELECT notification_id FROM {EVENTS_TABLE} "
        "WHERE notification_id BETWEEN ? AND ? ORDER BY notification_id",
        (first, first if last is None else last),
    )
    return [int(r[0]) for r in rows]


def streams_after(
    conn: Queries,
    after: dict[UUID, int],
    limit: int,
    data_types: Sequence[str],
    subject_types: Sequence[str],
    *,
    only_types: bool = False,
) -> list[tuple[UUID, int, str, bytes | None, str | None]]:
    """Up to `limit` events of the given customers' streams, each after its own
    version in `after`, ordered by stream (a uuid orders as its hex text) then
    version: (stream id, stream version, type, stored state, subject); the state
    only for events of `data_types`, the subject only for those of
    `subject_types` (None for the others, as neither is sent), and with
    `only_types` no event of any other type at all."""
    if conn.kind == "postgresql":
        # Two arrays, not two parameters a stream: a statement with hundreds of
        # parameters cost PostgreSQL more to parse and plan than to run. Each
        # stream's own index range (LATERAL), not a join the planner may make a
        # scan of the whole table: with a few hundred streams over a table of
        # tens of thousands of events it did, and took four times as long.
        wanted = "AND e.topic = ANY(?::text[]) " if only_types else ""
        rows = conn.fetchall(
            "SELECT w.id, e.originator_version, e.topic, "
            "CASE WHEN e.topic = ANY(?::text[]) THEN e.state END, "
            "CASE WHEN e.topic = ANY(?::text[]) THEN e.subject END "
            "FROM unnest(?::uuid[], ?::int[]) AS w(id, after) CROSS JOIN LATERAL ("
            f"SELECT e.originator_version, e.topic, e.state, e.subject FROM {EVENTS_TABLE} e "
            f"WHERE e.originator_id = w.id AND e.originator_version > w.after {wanted}"
            "ORDER BY e.originator_version LIMIT ?) AS e "
            "ORDER BY w.id, e.originator_version LIMIT ?",
            (
                pg_text_array(data_types),
                pg_text_array(subject_types),
                pg_array(after),
                pg_array(after.values()),
                *([pg_text_array([*data_types, *subject_types])] if only_types else []),
                limit,
                limit,
            ),
        )
    else:
        # SQLite stores stream ids as 32-digit hex text.
        clause = " OR ".join(["(originator_id = ? AND originator_version > ?)"] * len(after))
        params: list[object] = []
        for stream_id, version in after.items():
            params += (stream_id.hex, version)
        data_marks = ",".join("?" * len(data_types)) or "NULL"
        subject_marks = ",".join("?" * len(subject_types)) or "NULL"
        wanted = f"AND topic IN ({data_marks},{subject_marks}) " if only_types else ""
        rows = conn.fetchall(
            f"SELECT originator_id, originator_version, topic, "
            f"CASE WHEN topic IN ({data_marks}) THEN state END, "
            f"CASE WHEN topic IN ({subject_marks}) THEN subject END FROM {EVENTS_TABLE} "
            f"WHERE ({clause}) {wanted}ORDER BY originator_id, originator_version LIMIT ?",
            [
                *data_types,
                *subject_types,
                *params,
                *((*data_types, *subject_types) if only_types else ()),
                limit,
            ],
        )
    return [
        (stream_uuid(r[0]), r[1], r[2], None if r[3] is None else bytes(r[3]), r[4]) for r in rows
    ]


def stream_versions(conn: Queries, stream_ids: Sequence[UUID]) -> dict[UUID, int]:
    """The latest stored version of each given stream that has events: the
    `STREAM_VERSIONS` lookup asked alone (on PostgreSQL an index probe a stream)."""
    return versions(look_up(conn, [(STREAM_VERSIONS, stream_keys(conn.kind, stream_ids))])[0])


def stream_uuid(value: object) -> UUID:
    """A stream id as the store returns it (hex text on SQLite, a uuid on PostgreSQL)."""
    return value if isinstance(value, UUID) else UUID(str(value))
