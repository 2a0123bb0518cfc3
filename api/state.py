"""What every request's handler shares: the application's state (`AppState`),
built once by `create_app` and found from a request with `app_state`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from fastapi import Request

from api.access import LiveAccess
from api.page_session import SessionSigner
from api.pool import ConnectionPool
from services.appending import append_groups
from services.bootstrap import Services, prepare_store
from services.errors import Category, ServiceError

if TYPE_CHECKING:
    from services.appending import AppendGroups

DEFAULT_MAX_BODY = 16 * 1024 * 1024
# Events in one POST /v1/events: the work and the answer of one request stay
# bounded (a body of tiny invalid events would otherwise cost seconds per MB).
DEFAULT_MAX_ITEMS = 10_000
# Threads for appending bodies of several events, a lane of their own: however
# many are in flight, the shared thread pool (probes, reads) keeps its threads.
BULK_APPEND_THREADS = 40
# Who acts from the card page when the server runs open, unless configured
# (`ledger serve --user`, LEDGER_PAGE_USER).
OPEN_MODE_USER = "local"


@dataclass
class AppState:
    """The services, the access keys (None: open mode), the connection pool,
    the limits, the card page's session signer, and what starts on first use
    (the schema check, the group committer, the bulk-append lane)."""

    services: Services
    access: LiveAccess | None
    pool: ConnectionPool
    max_body: int
    protect_metrics: bool
    group_appends: bool = True
    max_items: int = DEFAULT_MAX_ITEMS
    page_user: str = OPEN_MODE_USER  # who acts from the page in open mode
    sessions: SessionSigner = field(default_factory=SessionSigner)
    _ready: bool = False
    _ready_lock: threading.Lock = field(default_factory=threading.Lock)
    _groups: AppendGroups | None = None
    _bulk: anyio.CapacityLimiter | None = None

    @property
    def ready(self) -> bool:
        """`ensure_ready` has succeeded (then requests skip calling it)."""
        return self._ready

    @property
    def running_groups(self) -> AppendGroups | None:
        """The group committer if started (starting it opens a connection)."""
        return self._groups

    def groups(self) -> AppendGroups:
        """The group committer of one-event appends, started on first use."""
        with self._ready_lock:
            if self._groups is None:
                self._groups = append_groups(self.services.app(), self.services.policy)
            return self._groups

    def bulk_lane(self) -> anyio.CapacityLimiter:
        """The threads bulk appends run on; made on the event loop, on first use."""
        if self._bulk is None:
            self._bulk = anyio.CapacityLimiter(BULK_APPEND_THREADS)
        return self._bulk

    def close(self) -> None:
        """Stop the group committer and close the pooled connections."""
        with self._ready_lock:
            if self._groups is not None:
                self._groups.close()
                self._groups = None
        self.pool.close()

    def ensure_ready(self) -> None:
        """The schema in place (created on first use unless LEDGER_AUTO_MIGRATE=0);
        checked once, then trusted until the process restarts."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with self.pool.connection() as conn:
                try:
                    prepare_store(conn)
                except ServiceError as exc:
                    if exc.category is Category.USAGE:  # schema missing: not ready yet
                        raise ServiceError(Category.UNAVAILABLE, exc.message) from exc
                    raise
            self._ready = True


def app_state(request: Request) -> AppState:
    """The state of the application `request` came to."""
    state: AppState = request.app.state.ledger
    return state
