"""Waiting for new events: shared by every follower of the events table (the
projection runner, the relay). Waiting out failures is `ledger.backoff`."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from ledger.config import DatabaseURL
from ledger.db import Connection
from ledger.errors import cannot_open
from ledger.stores.layout import NOTIFY_CHANNEL


class Waiter(Protocol):
    """How a follower waits for new events: a notification, or a poll interval."""

    def wait(self, timeout: float) -> None: ...

    def close(self) -> None: ...


class PollWaiter:
    """SQLite has no notifications: sleep, then look again."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def wait(self, timeout: float) -> None:
        self._stop.wait(timeout)

    def close(self) -> None:
        pass


class ListenWaiter:
    """PostgreSQL: writers NOTIFY on the events table's channel in the same
    transaction as their insert; LISTEN wakes the follower right after commit.
    `timeout` is the polling fallback should a notification ever be missed.

    LISTEN is issued here, so a follower that creates its waiter before its first
    read cannot miss a commit in between."""

    _SLICE = 0.25  # how often a long wait looks at the stop flag

    def __init__(self, raw: Any, stop: threading.Event, *, owned: bool = False) -> None:
        self._conn = raw
        self._stop = stop
        self._owned = owned
        raw.execute(f"LISTEN {NOTIFY_CHANNEL}")

    @classmethod
    def connect(cls, url: DatabaseURL, stop: threading.Event) -> ListenWaiter:
        """A waiter on a connection of its own (closed with the waiter)."""
        # Here, not at the top: followers of a SQLite store never load the driver.
        import psycopg

        try:
            raw = psycopg.connect(url.conninfo(), autocommit=True)
        except psycopg.Error as exc:
            raise cannot_open(url, exc) from exc
        return cls(raw, stop, owned=True)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for _ in self._conn.notifies(timeout=min(left, self._SLICE), stop_after=1):
                return

    def close(self) -> None:
        if self._owned:
            self._conn.close()


def waiter_on(conn: Connection, stop: threading.Event) -> Waiter:
    """A waiter that listens on `conn` itself (PostgreSQL) or polls (SQLite)."""
    if conn.kind == "postgresql":
        return ListenWaiter(conn.raw, stop)
    return PollWaiter(stop)
