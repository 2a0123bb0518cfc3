"""Where each projection is: one row per projection in `projection_tracking`.

A batch's read-model rows and its tracking row are written in one transaction,
so after any crash the position says exactly which events the rows contain.
Writers lock their tracking rows first and check the position they read the
batch from; if another process moved it meanwhile, the batch is dropped and
re-read (see `PositionMoved`), so two runners never apply an event twice.

A rebuild tracks its shadow tables under `NAME~rebuild`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.db import Connection
from ledger.stores.layout import EVENTS_TABLE
from projections.clock import now

TRACKING_TABLE = "projection_tracking"
REBUILD_MARK = "~rebuild"

LIVE = "live"
# A live projection that met an event it cannot apply: `stopped: <what and why>`.
# It stays at the position before that event until a rebuild or reset.
STOPPED = "stopped"
_STOPPED_PREFIX = STOPPED + ": "
LOADING = "loading"  # rebuild shadow, query indexes not built yet
INDEXED = "indexed"  # rebuild shadow, indexes built, catching up


def rebuild_name(name: str) -> str:
    """The tracking name of a rebuild's shadow of the projection `name`."""
    return name + REBUILD_MARK


@dataclass(frozen=True)
class Tracked:
    """One row of `projection_tracking`: the position applied up to, the layout version
    of the rows, the state, and when it was last updated and heard from."""

    name: str
    position: int
    version: int
    state: str
    updated_at: float | None
    heartbeat_at: float | None

    @property
    def stopped(self) -> str | None:
        """Why this projection stopped, or None while it runs."""
        if self.state.startswith(_STOPPED_PREFIX):
            return self.state[len(_STOPPED_PREFIX) :]
        return None


class PositionMoved(Exception):
    """Another process applied events to this projection since we read its position."""


_COLUMNS = "name, position, version, state, updated_at, heartbeat_at"


def create_tracking_table(conn: Connection) -> None:
    """Create the tracking table if missing."""
    real = "REAL" if conn.kind == "sqlite" else "double precision"
    integer = "INTEGER" if conn.kind == "sqlite" else "bigint"
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ("
        "name TEXT PRIMARY KEY, "
        f"position {integer} NOT NULL, "
        f"version {integer} NOT NULL, "
        "state TEXT NOT NULL, "
        f"updated_at {real}, "
        f"heartbeat_at {real})"
    )


def _tracked(row: tuple[Any, ...]) -> Tracked:
    name, position, version, state, updated_at, heartbeat_at = row
    return Tracked(
        str(name),
        int(position),
        int(version),
        str(state),
        None if updated_at is None else float(updated_at),
        None if heartbeat_at is None else float(heartbeat_at),
    )


def read_all(conn: Connection) -> dict[str, Tracked]:
    """Every tracking row, by name (live projections and rebuild shadows)."""
    rows = conn.fetchall(f"SELECT {_COLUMNS} FROM {TRACKING_TABLE} ORDER BY name")
    return {t.name: t for t in map(_tracked, rows)}


def read(conn: Connection, names: Sequence[str]) -> dict[str, Tracked]:
    """The tracking rows of `names` that exist, without locking them."""
    marks = ", ".join("?" * len(names))
    rows = conn.fetchall(
        f"SELECT {_COLUMNS} FROM {TRACKING_TABLE} WHERE name IN ({marks}) ORDER BY name", names
    )
    return {t.name: t for t in map(_tracked, rows)}


def read_with_head(conn: Connection, names: Sequence[str]) -> tuple[dict[str, Tracked], int]:
    """`read`, and the head (the highest position stored; 0 for none), in one
    statement: every read of a read model asks both first (read-your-writes),
    and on PostgreSQL each statement is a round trip. The head is 0 when none
    of `names` has a row."""
    marks = ", ".join("?" * len(names))
    rows = conn.fetchall(
        f"SELECT {_COLUMNS}, (SELECT MAX(notification_id) FROM {EVENTS_TABLE}) "
        f"FROM {TRACKING_TABLE} WHERE name IN ({marks}) ORDER BY name",
        names,
    )
    head = rows[0][-1] if rows else None
    return {t.name: t for t in (_tracked(r[:-1]) for r in rows)}, int(head or 0)


def lock(conn: Connection, names: Sequence[str]) -> dict[str, Tracked]:
    """Read and lock tracking rows; call inside `conn.transaction()`.

    SQLite's `BEGIN IMMEDIATE` already holds the database's write lock. On
    PostgreSQL rows are locked in name order, the same order every writer
    uses, so two runners with overlapping sets cannot deadlock."""
    if conn.kind == "sqlite":
        return read(conn, names)
    marks = ", ".join("?" * len(names))
    rows = conn.fetchall(
        f"SELECT {_COLUMNS} FROM {TRACKING_TABLE} WHERE name IN ({marks}) ORDER BY name FOR UPDATE",
        names,
    )
    return {t.name: t for t in map(_tracked, rows)}


def insert(conn: Connection, name: str, position: int, version: int, state: str) -> None:
    """Add a tracking row unless one with this name exists."""
    conn.execute(
        f"INSERT INTO {TRACKING_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL) "
        "ON CONFLICT (name) DO NOTHING",
        (name, position, version, state, now()),
    )


def replace(conn: Connection, name: str, position: int, version: int, state: str) -> None:
    """Write a tracking row, overwriting any of this name (heartbeat aside)."""
    conn.execute(
        f"INSERT INTO {TRACKING_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
        "version = excluded.version, state = excluded.state, updated_at = excluded.updated_at",
        (name, position, version, state, now()),
    )


def advance(conn: Connection, name: str, position: int) -> None:
    """Record that `name` has applied every event up to `position`."""
    conn.execute(
        f"UPDATE {TRACKING_TABLE} SET position = ?, updated_at = ? WHERE name = ?",
        (position, now(), name),
    )


def set_state(conn: Connection, name: str, state: str) -> None:
    """Set the state of `name` (live, loading, indexed, stopped: ...)."""
    conn.execute(
        f"UPDATE {TRACKING_TABLE} SET state = ?, updated_at = ? WHERE name = ?",
        (state, now(), name),
    )


def stop(conn: Connection, name: str, reason: str) -> None:
    """Mark `name` as stopped at an event it cannot apply, with the line saying why."""
    set_state(conn, name, _STOPPED_PREFIX + reason)


def delete(conn: Connection, name: str) -> None:
    """Remove the tracking row of `name`."""
    conn.execute(f"DELETE FROM {TRACKING_TABLE} WHERE name = ?", (name,))


def heartbeat(conn: Connection, names: Iterable[str]) -> None:
    """A follower says it is alive; `status` shows `following` while this is fresh."""
    names = list(names)
    marks = ", ".join("?" * len(names))
    conn.execute(
        f"UPDATE {TRACKING_TABLE} SET heartbeat_at = ? WHERE name IN ({marks})",
        (now(), *names),
    )
