"""The relay's tracked positions (`relay_tracking`, one row per relay name), the lock
that keeps one relay per name running, and the status built from them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.db import Connection
from ledger.locks import relay_lock_keys
from ledger.reading import count_after, head_position

TRACKING_TABLE = "relay_tracking"


def ensure_schema(conn: Connection) -> None:
    """Create the relay's tracking table if missing (idempotent, safe concurrently)."""
    with conn.schema_transaction():
        if conn.kind == "sqlite":
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ("
                "name TEXT PRIMARY KEY, position INTEGER NOT NULL, updated_at TEXT NOT NULL)"
            )
            return
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ("
            "name text PRIMARY KEY, position bigint NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now())"
        )


@dataclass(frozen=True)
class Tracking:
    """A relay's recorded position and when it was saved (0 and None: nothing recorded yet)."""

    name: str
    position: int
    updated_at: datetime | None


def load_tracking(conn: Connection, name: str) -> Tracking:
    """The recorded position of the relay called `name`; position 0 when it has none, so
    a new relay starts from the first event."""
    row = conn.fetchone(
        f"SELECT position, updated_at FROM {TRACKING_TABLE} WHERE name = ?", (name,)
    )
    if row is None:
        return Tracking(name, 0, None)
    updated = row[1]
    if isinstance(updated, str):
        updated = datetime.fromisoformat(updated)
    return Tracking(name, int(row[0]), updated)


def tracked_relays(conn: Connection) -> list[str]:
    """The names of the relays that have recorded a position."""
    return [str(r[0]) for r in conn.fetchall(f"SELECT name FROM {TRACKING_TABLE} ORDER BY name")]


def save_position(conn: Connection, name: str, position: int, *, force: bool = False) -> None:
    """Record `position` as relayed. Never moves backwards unless `force` (a reset):
    a second relay that slipped past the lock must not undo the first one's progress."""
    now: Any = datetime.now(UTC)
    if conn.kind == "sqlite":
        now = now.isoformat()
    guard = "" if force else f" WHERE {TRACKING_TABLE}.position < excluded.position"
    conn.execute(
        f"INSERT INTO {TRACKING_TABLE} (name, position, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
        f"updated_at = excluded.updated_at{guard}",
        (name, position, now),
    )


def try_relay_lock(conn: Connection, name: str) -> bool:
    """Take the session-level lock that lets one relay per tracking name run in
    the connection's ledger (PostgreSQL only; always True on SQLite). Held until
    the connection closes."""
    if conn.kind != "postgresql":
        return True
    keys = relay_lock_keys(conn.url.schema, name)
    row = conn.fetchone("SELECT pg_try_advisory_lock(?, ?)", keys)
    return bool(row and row[0])


@dataclass(frozen=True)
class RelayStatus:
    """How far one relay has got: its recorded position, the head, and how many events
    are stored after its position (`lag`: positions have holes, so the difference
    would mislead)."""

    name: str
    position: int
    head: int
    lag: int
    updated_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def relay_status(conn: Connection, name: str) -> RelayStatus:
    """The status of the relay called `name`, read from its tracking row and the events table."""
    tracking = load_tracking(conn, name)
    return RelayStatus(
        name=name,
        position=tracking.position,
        head=head_position(conn),
        lag=count_after(conn, tracking.position),
        updated_at=tracking.updated_at,
    )
