"""One server, many tenants: which tenant a request is for (`choose_tenant`) and
each tenant's state, made on first use and kept within a bound per database
server (`TenantStores`).

Which tenant: a key of one tenant (`tenant = "ID"` in the access file) is for
that tenant; an operator key (`all_tenants = true`), and every caller in open
mode, names it with the `X-Ledger-Tenant` header. A key of one tenant that
names another is refused (403); on a server of many tenants a request without a
tenant (an operator key or open mode without the header) is refused (400), and
so is a key of no tenant at all (403: `ledger serve` refuses to start with one,
this holds for a key added while it runs). On a server of one store the header
may only name that store's tenant (`ledger --tenant ID serve`), and a key of
another tenant is refused (403).

The states: each tenant in use has an `AppState` of its own (services,
connection pool, group committer, ready flag) that requests lease while they
run (`lease`; the request-id middleware releases it when the answer is sent).
What the directory says of a tenant is trusted for `ttl` seconds, then looked
up again: a tenant being moved is refused with 503 (retryable), and a tenant
whose store changed gets a new state (the old one closes when its last request
ends). A request answered 5xx (say, its store went away in a move) makes the
next one look again at once.

The bound: at most `per_server` tenants' states are open on one database server
(`Tenant.server`); a new one evicts the least recently used idle one there
(closing its pools, group committer and kept appenders) or waits for one to go
idle, up to `wait_seconds`, then 503. The tenants of one server share one
semaphore for reads (`pool_size` connections lent at once, all of them
together), and each keeps at most one reading connection idle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from api.access import AccessKey
from api.pool import ConnectionPool
from api.problems import Refused
from api.state import RELEASE_KEY, STORE_KEY, TENANT_KEY, AppState
from ledger.config import ConfigError, parse_database_url
from ledger.db import Connection
from ledger.environment import DEFAULT_API_POOL_SIZE
from ledger.tenants import Tenant, TenantDirectory, check_tenant_id
from services.errors import Category, ServiceError
from services.tenants import directory_ready, resolve_tenant

log = logging.getLogger("ledger.api")

TENANT_HEADER = "x-ledger-tenant"
DEFAULT_PER_SERVER = 8  # tenants' states open on one database server
DEFAULT_TTL = 5.0  # seconds a directory entry is trusted before it is looked up again


def choose_tenant(
    server: AppState, key: AccessKey | None, header: str | None, *, open_mode: bool
) -> str | None:
    """The tenant a request is for (None: the server's single store), from its
    key and its `X-Ledger-Tenant` header; `Refused` when it may not have one
    (module doc), NOT_FOUND when a server of one tenant is asked for another."""
    if header is not None:
        header = header.strip()
        try:
            check_tenant_id(header)
        except ConfigError as exc:
            raise Refused(400, f"X-Ledger-Tenant: {exc}") from None
    name = "-" if key is None else key.name
    own = None if key is None else key.tenant
    if own is not None and header is not None and header != own:
        raise Refused(403, f"the key {name!r} is of tenant {own!r}, not of {header!r}")
    wanted = header or own
    if server.tenants is None:
        if wanted is None:  # the single store, as it always was
            return None
        served = server.services.tenant
        if own is not None and own != served:
            where = "a single ledger" if served is None else f"tenant {served!r}"
            raise Refused(403, f"the key {name!r} is of tenant {own!r}; this server serves {where}")
        if header is not None and header != served:
            if served is None:
                raise Refused(400, "this server serves a single ledger: send no X-Ledger-Tenant")
            raise ServiceError(Category.NOT_FOUND, f"unknown tenant {header!r}")
        return served
    if key is not None and own is None and not key.all_tenants:
        raise Refused(403, no_tenant_text(name))
    if wanted is None:
        who = "open mode" if open_mode else f"the key {name!r} is of all tenants"
        raise Refused(400, f"name the tenant with the X-Ledger-Tenant header ({who})")
    return wanted


def no_tenant_text(name: str) -> str:
    """Why a key of no tenant is refused on a server of many tenants."""
    return (
        f"the key {name!r} is of no tenant: on a server of many tenants give it "
        'tenant = "ID" or all_tenants = true (ledger access new-key --tenant ID / --all-tenants)'
    )


def header_tenant(headers: MutableMapping[str, str] | Any) -> str | None:
    """The request's `X-Ledger-Tenant`, if it has one."""
    value: str | None = headers.get(TENANT_HEADER)
    return value


class NoStorePool(ConnectionPool):
    """The pool of a server of many tenants' own state: it has no store, and
    a request that asks it for a connection is a defect (a tenant's state was
    to be used), refused rather than served from some default store."""

    def __init__(self) -> None:
        super().__init__(parse_database_url("sqlite:///:memory:"), 1)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        raise RuntimeError("a server of many tenants has no store of its own")
        yield  # pragma: no cover


@dataclass
class _Entry:
    tenant: Tenant
    state: AppState
    resolved_at: float
    last_used: float
    leases: int = 0
    retired: bool = False


@dataclass
class TenantStores:
    """Each tenant's state, made on first use and kept (module doc)."""

    directory: TenantDirectory
    make_state: Callable[[Tenant, threading.BoundedSemaphore], AppState]
    pool_size: int = DEFAULT_API_POOL_SIZE
    per_server: int = DEFAULT_PER_SERVER
    ttl: float = DEFAULT_TTL
    wait_seconds: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _slots: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _closed: bool = False
    _ensured: bool = False  # the directory's table made sure of once

    def lease_known(self, tenant: str, scope_state: dict[str, Any]) -> AppState | None:
        """The tenant's state if it is open and its entry fresh (no waiting, no
        I/O), leased for the request whose scope state this is; else None."""
        now = self.clock()
        with self._changed:
            entry = self._entries.get(tenant)
            if entry is None or now - entry.resolved_at >= self.ttl:
                return None
            return self._lease(entry, now, scope_state)

    def lease(self, tenant: str, scope_state: dict[str, Any]) -> AppState:
        """The tenant's state, leased for the request whose scope state this is:
        looked up in the directory when not fresh (NOT_FOUND: no such tenant;
        UNAVAILABLE: being moved, or no room on its server in time)."""
        known = self.lease_known(tenant, scope_state)
        if known is not None:
            return known
        try:
            found = resolve_tenant(self.directory, tenant, ensure=not self._ensured)
            self._ensured = True
        except ServiceError as exc:
            if exc.category in (Category.NOT_FOUND, Category.UNAVAILABLE):
                self._retire(tenant)
            raise
        evicted: list[AppState] = []
        try:
            with self._changed:
                state = self._lease_found(found, scope_state, evicted)
        finally:
            for old in evicted:
                _close(old)
        return state

    def check_directory(self) -> None:
        """UNAVAILABLE unless the directory answers (for /readyz)."""
        directory_ready(self.directory, ensure=not self._ensured)
        self._ensured = True

    def close(self) -> None:
        """Close every tenant's state (the server stops)."""
        with self._changed:
            self._closed = True
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            _close(entry.state)

    def open_count(self, server: str) -> int:
        """How many tenants' states are open on `server` (for tests and logs)."""
        with self._changed:
            return sum(1 for e in self._entries.values() if e.tenant.server == server)

    def _lease_found(
        self, found: Tenant, scope_state: dict[str, Any], evicted: list[AppState]
    ) -> AppState:
        deadline = self.clock() + self.wait_seconds
        while True:
            if self._closed:
                raise ServiceError(Category.UNAVAILABLE, "the server is stopping")
            now = self.clock()
            entry = self._entries.get(found.tenant)
            if entry is not None and entry.tenant == found:
                entry.resolved_at = now
                return self._lease(entry, now, scope_state)
            if entry is not None:  # moved, or its rights changed: a new state
                log.info("tenant %s: its directory entry changed; new state", found.tenant)
                self._drop(entry, evicted)
            if self._room(found.server, evicted):
                break
            left = deadline - now
            if left <= 0:
                raise ServiceError(
                    Category.UNAVAILABLE,
                    f"every tenant's state on {found.server} is in use "
                    f"({self.per_server} at most); retry",
                )
            self._changed.wait(left)
        slots = self._slots.setdefault(found.server, threading.BoundedSemaphore(self.pool_size))
        entry = _Entry(found, self.make_state(found, slots), now, now)
        self._entries[found.tenant] = entry
        return self._lease(entry, now, scope_state)

    def _room(self, server: str, evicted: list[AppState]) -> bool:
        """Whether another state fits on `server`, after evicting its least
        recently used idle one if need be."""
        on_server = [e for e in self._entries.values() if e.tenant.server == server]
        if len(on_server) < self.per_server:
            return True
        idle = [e for e in on_server if e.leases == 0]
        if not idle:
            return False
        victim = min(idle, key=lambda e: e.last_used)
        self._drop(victim, evicted)
        return True

    def _lease(self, entry: _Entry, now: float, scope_state: dict[str, Any]) -> AppState:
        entry.leases += 1
        entry.last_used = now
        scope_state[STORE_KEY] = entry.state
        scope_state[RELEASE_KEY] = lambda status: self._release(entry, status)
        return entry.state

    def _release(self, entry: _Entry, status: int) -> None:
        closing = None
        with self._changed:
            entry.leases -= 1
            if status >= 500 and not entry.retired:
                # Its store may have moved: look in the directory again next time.
                entry.resolved_at = float("-inf")
            if entry.retired and entry.leases == 0:
                closing = entry.state
            self._changed.notify_all()
        if closing is not None:
            # Called on the event loop (the middleware): closing waits for the
            # group committer's thread and closes connections, so elsewhere.
            threading.Thread(target=_close, args=(closing,), name="tenant-close").start()

    def _retire(self, tenant: str) -> None:
        evicted: list[AppState] = []
        with self._changed:
            entry = self._entries.get(tenant)
            if entry is not None:
                self._drop(entry, evicted)
                self._changed.notify_all()
        for old in evicted:
            _close(old)

    def _drop(self, entry: _Entry, evicted: list[AppState]) -> None:
        """Out of the table; closed now if idle, else when its last lease ends."""
        del self._entries[entry.tenant.tenant]
        entry.retired = True
        if entry.leases == 0:
            evicted.append(entry.state)


def _close(state: AppState) -> None:
    try:
        state.close()
        state.services.close()
    except Exception as exc:  # a store gone away: nothing left to close cleanly
        log.warning("closing a tenant's state: %s", type(exc).__name__)


def choose_for_request(
    request_scope_state: dict[str, Any],
    server: AppState,
    key: AccessKey | None,
    header: str | None,
) -> str | None:
    """`choose_tenant`, kept in the request's scope for `api.state.app_state`."""
    tenant = choose_tenant(server, key, header, open_mode=server.access is None)
    if tenant is not None:
        request_scope_state[TENANT_KEY] = tenant
    return tenant
