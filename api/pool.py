"""A small pool of `ledger.db.Connection`s: one per request, reused across requests.

Opening a PostgreSQL connection costs milliseconds, more than a tab read; a
request borrows one and gives it back. A connection that failed is closed, not
returned, and one the server has ended while idle (a restart) is noticed
before it is lent, so a request after the database came back opens a fresh one
instead of failing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ledger.config import DatabaseURL
from ledger.db import Connection
from services.errors import Category, ServiceError, service_errors


class ConnectionPool:
    """At most `size` connections lent at once; a request that waits longer than
    `wait_seconds` for one gets an UNAVAILABLE ServiceError (a 503), not a hang.

    `slots` shares the bound with other pools (the tenants on one database
    server, `api.tenancy`): then at most that many are lent by all of them
    together; `keep_idle` keeps at most that many idle between requests (the
    rest are closed as they come back)."""

    def __init__(
        self,
        url: DatabaseURL,
        size: int = 8,
        wait_seconds: float = 10.0,
        *,
        slots: threading.BoundedSemaphore | None = None,
        keep_idle: int | None = None,
    ) -> None:
        self.url = url
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = slots if slots is not None else threading.BoundedSemaphore(size)
        self._wait = wait_seconds
        self._keep_idle = keep_idle
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        if not self._slots.acquire(timeout=self._wait):
            raise ServiceError(Category.UNAVAILABLE, "every database connection is busy")
        try:
            conn = self._take_idle()
            if conn is None:
                with service_errors():
                    conn = Connection(self.url)
            try:
                yield conn
            except BaseException as exc:
                if _keeps(exc):
                    self._give_back(conn)
                else:
                    conn.close()
                raise
            self._give_back(conn)
        finally:
            self._slots.release()

    def _give_back(self, conn: Connection) -> None:
        if self._closed or (self._keep_idle is not None and self._idle.qsize() >= self._keep_idle):
            conn.close()
        else:
            self._idle.put(conn)

    def _take_idle(self) -> Connection | None:
        """An idle connection the server has not ended; those it has (after a
        restart, all of them) are closed on the way, so the request that finds
        them gets a fresh one instead of failing on one of them."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return None
            if not conn.broken:
                return conn
            conn.close()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _keeps(exc: BaseException) -> bool:
    """A refusal decided above the database leaves the connection healthy."""
    return isinstance(exc, ServiceError) and exc.category is not Category.UNAVAILABLE
