"""Recording the acknowledged position without making publishing wait for it."""

from __future__ import annotations

import logging
import threading
import time

from ledger.backoff import Backoff
from ledger.config import DatabaseURL
from ledger.db import Connection
from relay.errors import close_quietly, database_errors, describe
from relay.tracking import save_position

log = logging.getLogger("ledger.relay")


class PositionTracker:
    """Records the acknowledged position from a thread of its own.

    Publishing never waits for the tracking write: on SQLite, a busy writer can keep
    the database's single write lock for seconds (its lock is not fair), and on any
    store a slow write would otherwise add to every event's latency. Writes are
    coalesced (the newest acknowledged position wins) and never go backwards, so the
    recorded position only ever trails what Kafka acknowledged: after a crash a
    little more is sent again, nothing is skipped."""

    def __init__(self, url: DatabaseURL, name: str, interval_s: float = 0.2) -> None:
        self.url = url
        self.name = name
        self.interval_s = interval_s
        self.saved: int | None = None
        self._pending: int | None = None
        self._closing = False
        self._failing = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="relay-tracking", daemon=True)
        self._thread.start()

    def advance(self, position: int) -> None:
        with self._cv:
            if self._pending is None or position > self._pending:
                self._pending = position
            self._cv.notify()

    def close(self, timeout_s: float = 30.0) -> bool:
        """Write what is pending and stop; False if it could not be written in time."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout_s)
        return not self._thread.is_alive() and self._pending is None

    def _loop(self) -> None:
        conn: Connection | None = None
        backoff = Backoff(5.0)
        try:
            while True:
                with self._cv:
                    while self._pending is None and not self._closing:
                        self._cv.wait()
                    position = self._pending
                    if position is None:
                        return
                try:
                    if conn is None:
                        conn = Connection(self.url)
                    save_position(conn, self.name, position)
                except database_errors() as exc:
                    if conn is not None:
                        close_quietly(conn)
                        conn = None
                    if not self._failing:
                        log.warning(
                            "relay: cannot record position %d (%s); retrying",
                            position,
                            describe(exc),
                        )
                        self._failing = True
                    time.sleep(backoff.next())
                    continue
                if self._failing:
                    log.info("relay: recording positions again (at %d)", position)
                    self._failing = False
                backoff.reset()
                with self._cv:
                    self.saved = position
                    if self._pending == position:
                        self._pending = None
                    closing = self._closing
                if not closing:
                    # Coalesces the next positions; `close()` need not wait it out.
                    with self._cv:
                        self._cv.wait_for(lambda: self._closing, self.interval_s)
        finally:
            if conn is not None:
                close_quietly(conn)
