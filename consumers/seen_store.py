"""Which events a consumer group has already handled, so redeliveries are skipped.

The relay delivers at least once: after a crash, a broker outage or a consumer-group
rebalance an event can arrive again. A subscriber asks its seen-store before handing
an event to the handler and records it after the handler succeeded.

- `InMemorySeenStore`: per process, bounded; for tests and handlers that are
  idempotent anyway and only want to save work.
- `PostgresSeenStore`: a table keyed by (consumer group, event id), shared by every
  instance of the group and surviving restarts. The same SQL runs on SQLite, so it
  accepts a SQLite URL for single-node services.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ledger.config import DatabaseURL, parse_database_url
from ledger.db import Connection

SEEN_TABLE = "subscriber_seen"


class SeenStore(Protocol):
    """Where a subscriber looks up and records the event ids its consumer group has handled."""

    def seen(self, group: str, event_id: str) -> bool:
        """True when `group` already handled `event_id`."""
        ...

    def mark(self, group: str, event_id: str) -> None:
        """Record that `group` handled `event_id` (idempotent)."""
        ...

    def close(self) -> None: ...


class InMemorySeenStore:
    """Remembers the most recent `max_entries` event ids per process."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def seen(self, group: str, event_id: str) -> bool:
        return (group, event_id) in self._ids

    def mark(self, group: str, event_id: str) -> None:
        key = (group, event_id)
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.max_entries:
            self._ids.popitem(last=False)

    def close(self) -> None:
        self._ids.clear()


class PostgresSeenStore:
    """Seen event ids in a `subscriber_seen` table (created if missing)."""

    def __init__(self, database: str | DatabaseURL | Connection) -> None:
        if isinstance(database, Connection):
            self.conn, self._owned = database, False
        else:
            url = parse_database_url(database) if isinstance(database, str) else database
            self.conn, self._owned = Connection(url), True
        ensure_seen_schema(self.conn)

    def seen(self, group: str, event_id: str) -> bool:
        row = self.conn.fetchone(
            f"SELECT 1 FROM {SEEN_TABLE} WHERE consumer_group = ? AND event_id = ?",
            (group, event_id),
        )
        return row is not None

    def mark(self, group: str, event_id: str) -> None:
        self.conn.execute(
            f"INSERT INTO {SEEN_TABLE} (consumer_group, event_id, seen_at) VALUES (?, ?, ?) "
            "ON CONFLICT (consumer_group, event_id) DO NOTHING",
            (group, event_id, self._now()),
        )

    def prune(self, group: str, older_than: timedelta) -> int:
        """Forget ids seen longer ago than `older_than`; returns how many.

        Safe once nothing that old can be redelivered: after the group's committed
        offsets have moved past them and no one will rewind the group that far."""
        cutoff: Any = datetime.now(UTC) - older_than
        if self.conn.kind == "sqlite":
            cutoff = cutoff.isoformat()
        cur = self.conn.execute(
            f"DELETE FROM {SEEN_TABLE} WHERE consumer_group = ? AND seen_at < ?", (group, cutoff)
        )
        return int(cur.rowcount or 0)

    def close(self) -> None:
        if self._owned:
            self.conn.close()

    def _now(self) -> Any:
        now = datetime.now(UTC)
        return now.isoformat() if self.conn.kind == "sqlite" else now


def ensure_seen_schema(conn: Connection) -> None:
    """Create the seen-store's table and its index for `prune()` if missing (idempotent,
    safe concurrently)."""
    seen_at = "TEXT NOT NULL" if conn.kind == "sqlite" else "timestamptz NOT NULL DEFAULT now()"
    with conn.schema_transaction():
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SEEN_TABLE} (consumer_group TEXT NOT NULL, "
            f"event_id TEXT NOT NULL, seen_at {seen_at}, PRIMARY KEY (consumer_group, event_id))"
        )
        # For prune().
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {SEEN_TABLE}_seen_at ON {SEEN_TABLE} "
            "(consumer_group, seen_at)"
        )
