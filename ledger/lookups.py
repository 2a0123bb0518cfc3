"""The append engine's questions to the events table, as `ledger.db.Lookup`s, so
that one batch asks them all (with the key table's) in one statement, and the
readers of their answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from ledger.db import Lookup, Queries, look_up
from ledger.stores.layout import EVENTS_TABLE

# The stored JSON of producer event ids: (event_id, state, -).
EVENT_STATES = Lookup(EVENTS_TABLE, "event_id", "event_id", blob="state")
# Who created subjects (`order:o-17`): (subject, -, customer_id).
SUBJECT_OWNERS = Lookup(
    EVENTS_TABLE,
    "subject",
    "subject",
    text="customer_id",
    where="creates_subject = ? AND ",
    where_params=(True,),
)
# Customer streams with stored events, with the latest version of each: (stream
# id as text, -, version as text). SQLite stores stream ids as 32-digit hex
# text, PostgreSQL as uuid (`stream_keys`).
STREAM_VERSIONS = Lookup(
    EVENTS_TABLE,
    "originator_id",
    "CAST(originator_id AS TEXT)",
    text="CAST(MAX(originator_version) AS TEXT)",
    grouped=True,
    probe_type="uuid",
)


def stream_keys(kind: str, stream_ids: Sequence[UUID]) -> list[Any]:
    """Stream ids as `STREAM_VERSIONS` asks for them on a store of `kind`."""
    return list(stream_ids) if kind == "postgresql" else [s.hex for s in stream_ids]


def states(rows: list[tuple[Any, Any, Any]]) -> dict[str, bytes]:
    """The answer to EVENT_STATES: stored JSON by producer event id."""
    return {r[0]: bytes(r[1]) for r in rows}


def owners(rows: list[tuple[Any, Any, Any]]) -> dict[str, str]:
    """The answer to SUBJECT_OWNERS: the creating customer by subject."""
    return {r[0]: r[2] for r in rows}


def versions(rows: list[tuple[Any, Any, Any]]) -> dict[UUID, int]:
    """The answer to STREAM_VERSIONS: the latest version of each stream that has events."""
    return {UUID(r[0]): int(r[2]) for r in rows}


def states_by_event_id(conn: Queries, event_ids: Sequence[str]) -> dict[str, bytes]:
    """The stored JSON of each given producer event id that is stored."""
    return states(look_up(conn, [(EVENT_STATES, event_ids)])[0])
