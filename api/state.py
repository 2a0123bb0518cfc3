"""What every request's handler shares: the application's state (`AppState`),
built once by `create_app` and found from a request with `app_state`.

A server of many tenants (`api.tenancy`) has one `AppState` of its own (the
access keys, the limits, the page's sessions; found with `server_state`) and
one per tenant in use, sharing those, each with the tenant's services,
connection pool and group committer: `app_state` is then the state of the
tenant the request was authenticated for."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from fastapi import Request

from api.access import LiveAccess
from api.page_session import SessionSigner
from api.pool import ConnectionPool
from ledger.environment import DEFAULT_APPEND_WRITER
from services.appending import append_groups
from services.bootstrap import Services, prepare_store
from services.errors import Category, ServiceError
from services.writer_process import ProcessGroups, StoreOptions, WriterProcess

if TYPE_CHECKING:
    from api.tenancy import TenantStores
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
    # Where grouped appends are stored: "thread" (a thread of this process) or
    # "process" (a writer process of the server's own: services.writer_process).
    append_writer: str = DEFAULT_APPEND_WRITER
    max_items: int = DEFAULT_MAX_ITEMS
    page_user: str = OPEN_MODE_USER  # who acts from the page in open mode
    sessions: SessionSigner = field(default_factory=SessionSigner)
    _ready: bool = False
    _ready_lock: threading.Lock = field(default_factory=threading.Lock)
    _groups: AppendGroups | ProcessGroups | None = None
    _writer: WriterProcess | None = None
    _bulk: anyio.CapacityLimiter | None = None
    # A server of many tenants: its tenants' states (its own holds no store).
    tenants: TenantStores | None = None
    # A tenant's state: the server's, whose bulk-append lane it shares.
    server: AppState | None = None

    @property
    def ready(self) -> bool:
        """`ensure_ready` has succeeded (then requests skip calling it)."""
        return self._ready

    @property
    def uses_writer_process(self) -> bool:
        """One-event appends are grouped, in a writer process (started with the server)."""
        return self.group_appends and self.append_writer == "process"

    @property
    def running_groups(self) -> AppendGroups | ProcessGroups | None:
        """The group committer if started (starting it opens a connection)."""
        return self._groups

    def groups(self) -> AppendGroups | ProcessGroups:
        """The group committer of one-event appends, started on first use."""
        with self._ready_lock:
            if self._groups is None:
                if self.append_writer == "process":
                    store = StoreOptions.of(self.services)
                    self._groups = ProcessGroups(self.writer_process(store), store)
                else:
                    self._groups = append_groups(self.services.app(), self.services.policy)
            return self._groups

    def writer_process(self, store: StoreOptions | None = None) -> WriterProcess:
        """The server's writer process (every tenant's), started if it is not
        running (a new one opens `store` at once)."""
        if self.server is not None:
            return self.server.writer_process(store)
        if self._writer is None:
            self._writer = WriterProcess()
        self._writer.start(store)
        return self._writer

    def bulk_lane(self) -> anyio.CapacityLimiter:
        """The threads bulk appends run on; made on the event loop, on first use
        (one lane per server, whatever the tenant)."""
        if self.server is not None:
            return self.server.bulk_lane()
        if self._bulk is None:
            self._bulk = anyio.CapacityLimiter(BULK_APPEND_THREADS)
        return self._bulk

    def close(self) -> None:
        """Stop the group committer and close the pooled connections."""
        with self._ready_lock:
            if self._groups is not None:
                self._groups.close()
                self._groups = None
        self.close_writer()
        self.pool.close()

    def close_writer(self) -> None:
        """Stop the server's writer process, if it runs (after its last group)."""
        with self._ready_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

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


# Where a request's scope keeps its tenant (chosen when it is authenticated),
# the tenant's state it uses and the release of that state (`api.tenancy`).
TENANT_KEY = "ledger_tenant"
STORE_KEY = "ledger_store"
RELEASE_KEY = "ledger_release"


def server_state(request: Request) -> AppState:
    """The state of the server `request` came to: its access keys, limits and
    sessions, whatever the tenant (on a single store, also that store's)."""
    state: AppState = request.app.state.ledger
    return state


def app_state(request: Request) -> AppState:
    """The state whose store serves `request`: the server's own, or on a
    server of many tenants the state of the tenant the request was
    authenticated for (made or looked up again in the directory as needed:
    this may wait for the directory; on the event loop see `app_state_soon`)."""
    settled = _settled(request)
    if settled is not None:
        return settled
    return _tenant_stores(request).lease(_tenant(request), request.scope["state"])


async def app_state_soon(request: Request) -> AppState:
    """`app_state` for a handler on the event loop: a tenant's state known and
    fresh is taken there; one to look up goes to a worker thread."""
    settled = _settled(request)
    if settled is None:
        settled = _tenant_stores(request).lease_known(_tenant(request), request.scope["state"])
    if settled is not None:
        return settled
    from fastapi.concurrency import run_in_threadpool

    return await run_in_threadpool(app_state, request)


def _settled(request: Request) -> AppState | None:
    """The state that needs no tenant's look-up: the one already chosen for
    `request`, or the server's own on a single store (None on a server of many
    tenants, before the request's tenant is leased)."""
    found = _chosen(request)
    if found is not None:
        return found
    server = server_state(request)
    return server if server.tenants is None else None


def _tenant_stores(request: Request) -> TenantStores:
    tenants = server_state(request).tenants
    assert tenants is not None  # `_settled` answered None
    return tenants


def _chosen(request: Request) -> AppState | None:
    state: AppState | None = request.scope.get("state", {}).get(STORE_KEY)
    return state


def _tenant(request: Request) -> str:
    tenant: str | None = request.scope.get("state", {}).get(TENANT_KEY)
    if tenant is None:
        # Every handler that reaches a store authenticates its caller first
        # (`api.caller`, the page's `Visit.state`), which chooses the tenant.
        raise RuntimeError("a tenant's store was asked for before its caller was authenticated")
    return tenant
