"""Tenants: the directory's commands (add, list, move, remove) and resolving a
tenant id to its store, for every door that takes `--tenant`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ledger.config import ConfigError, DatabaseURL, parse_database_url
from ledger.environment import DATABASE_URL_ENV, TENANT_ENV, TENANTS_URL_ENV
from ledger.tenants import (
    Tenant,
    TenantDirectory,
    TenantState,
    check_tenant_id,
    same_store,
    tenant_store_url,
)
from services.bootstrap import migrate
from services.errors import Category, ServiceError, service_errors

# How long a client should wait before retrying a request refused because its
# tenant is being switched to another store, in seconds.
MOVE_RETRY_AFTER_S = 2


def directory(option: str | None) -> TenantDirectory:
    """The tenant directory named by `--tenants-db`, else LEDGER_TENANTS_URL."""
    text = option or os.environ.get(TENANTS_URL_ENV)
    if not text:
        raise ServiceError(
            Category.USAGE,
            f"no tenant directory: give --tenants-db URL or set {TENANTS_URL_ENV}",
        )
    return TenantDirectory(_parsed(text))


def resolve_tenant(found: TenantDirectory, tenant: str, *, ensure: bool = True) -> Tenant:
    """The directory's entry for `tenant`: NOT_FOUND if it has none, UNAVAILABLE
    (retryable) while the tenant is being moved. `ensure=False` for a caller that
    made sure of the directory's table already (a server looking tenants up
    again every few seconds: no DDL lock each time)."""
    with service_errors(), found.connect() as conn:
        if ensure:
            found.ensure(conn)
        entry = found.get(conn, tenant)
    if entry is None:
        raise ServiceError(Category.NOT_FOUND, f"unknown tenant {tenant!r}")
    if entry.state is TenantState.MOVING:
        raise tenant_moving(tenant)
    return entry


def directory_ready(found: TenantDirectory, *, ensure: bool = True) -> None:
    """UNAVAILABLE unless the directory answers (a server's readiness); its table
    made first unless `ensure=False`."""
    try:
        with service_errors(), found.connect() as conn:
            if ensure:
                found.ensure(conn)
            found.get(conn, "")
    except ServiceError as exc:
        if exc.category is Category.UNAVAILABLE:
            raise
        raise ServiceError(Category.UNAVAILABLE, f"tenant directory: {exc.message}") from exc


def serving_directory(
    db_option: str | None, tenant_option: str | None, tenants_option: str | None
) -> str | None:
    """The tenant directory a server serves every tenant of, or None for a server
    of one store: a directory given (`--tenants-db`, else LEDGER_TENANTS_URL)
    and no store (`--db`, LEDGER_DATABASE_URL) nor tenant (`--tenant`,
    LEDGER_TENANT) named."""
    if db_option or os.environ.get(DATABASE_URL_ENV):
        return None
    if tenant_option or os.environ.get(TENANT_ENV):
        return None
    return tenants_option or os.environ.get(TENANTS_URL_ENV) or None


def tenant_moving(tenant: str) -> ServiceError:
    """The retryable refusal of a request whose tenant is being switched."""
    return ServiceError(
        Category.UNAVAILABLE,
        f"tenant {tenant!r} is being moved to another store; retry in {MOVE_RETRY_AFTER_S} s",
    )


def list_tenants(found: TenantDirectory) -> list[Tenant]:
    """Every tenant in the directory, by id."""
    with service_errors(), found.connect() as conn:
        found.ensure(conn)
        return found.all(conn)


def add_tenant(found: TenantDirectory, tenant: str, db: str, rights: str | None) -> Tenant:
    """Register `tenant` with its store at `db` (its own schema unless the URL names
    one), creating and migrating the store first. Refused when the tenant exists
    or another tenant already uses that store: tenants never share one."""
    try:
        check_tenant_id(tenant)
        store = tenant_store_url(tenant, db)
        url = parse_database_url(store)
    except ConfigError as exc:
        raise ServiceError(Category.USAGE, str(exc)) from exc
    with service_errors(), found.connect() as conn:
        found.ensure(conn)
        _refuse_taken(found.all(conn), tenant, url)
    migrate(url)
    with service_errors(), found.connect() as conn:
        with conn.transaction():
            # Checked again in the writing transaction: another `tenants add`
            # may have taken the name or the store meanwhile.
            _refuse_taken(found.all(conn), tenant, url)
            return found.add(conn, tenant, store, rights)


def remove_tenant(found: TenantDirectory, tenant: str) -> Tenant:
    """Take `tenant` out of the directory. Its store is kept: the ledger never
    deletes events; an operator drops the schema or file when they mean to."""
    with service_errors(), found.connect() as conn:
        found.ensure(conn)
        with conn.transaction():
            entry = found.get(conn, tenant)
            if entry is None:
                raise ServiceError(Category.NOT_FOUND, f"unknown tenant {tenant!r}")
            found.remove(conn, tenant)
    return entry


@dataclass(frozen=True)
class MoveReport:
    """What `move_tenant` did: where from and to, the events copied while the
    tenant took appends and during the switch, the other tables copied, and the
    chain's head both stores agree on."""

    tenant: str
    source: str
    destination: str
    events_before_switch: int
    events_during_switch: int
    tables: dict[str, int]
    head: int
    chain_hash: str
    switch_seconds: float
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "from": self.source,
            "to": self.destination,
            "events_before_switch": self.events_before_switch,
            "events_during_switch": self.events_during_switch,
            "tables": self.tables,
            "head": self.head,
            "chain_hash": self.chain_hash,
            "switch_seconds": round(self.switch_seconds, 3),
            "skipped_tables": self.skipped,
        }


def move_tenant(
    found: TenantDirectory,
    tenant: str,
    to: str,
    *,
    on_progress: Callable[[str, int], None] | None = None,
) -> MoveReport:
    """Move `tenant`'s store to `to` (PostgreSQL to PostgreSQL), losing nothing.

    1. The destination is migrated, and the events stored so far are copied while
       the tenant keeps taking appends (a move that stopped half-way resumes: the
       destination's events must be a prefix of the source's).
    2. The switch: the directory marks the tenant moving (new requests are refused
       with a retryable answer), the source's write lock is taken (appends in flight
       wait), the rest of the events are copied, and the source is frozen: an
       append that waited fails, retryably, and is never stored there.
    3. Every other table (data keys, read models and their positions, relay
       positions, anchors) is copied from one snapshot of the source.
    4. The destination's hash chain is recomputed and must end on the source's head;
       only then does the directory name the new store.
    A failure before the directory switches gives the source back unfrozen."""
    from ledger.audit.verify import current_anchor, verify_chain
    from ledger.db import Connection
    from ledger.reading import head_position
    from ledger.stores import copying

    progress = on_progress or (lambda _stage, _n: None)
    entry = resolve_tenant(found, tenant)
    try:
        store = tenant_store_url(tenant, to)
        target = parse_database_url(store)
    except ConfigError as exc:
        raise ServiceError(Category.USAGE, str(exc)) from exc
    source_url = entry.url
    if source_url.kind != "postgresql" or target.kind != "postgresql":
        raise ServiceError(
            Category.USAGE, "ledger tenants move copies PostgreSQL stores to PostgreSQL stores"
        )
    if same_store(source_url, target):
        raise ServiceError(Category.USAGE, f"tenant {tenant!r} is already at {target.display()}")
    with service_errors(), found.connect() as conn:
        _refuse_taken([t for t in found.all(conn) if t.tenant != tenant], tenant, target)
    migrate(target)
    with (
        service_errors(),
        _copy_refused(),
        Connection(source_url) as src,
        Connection(target) as dst,
    ):
        # Moving back to a store the tenant left: it was frozen then.
        copying.thaw(dst)
        before = copying.copy_prefix(src, dst)
        progress("copy", before)
        with found.connect() as conn:
            found.set_state(conn, tenant, TenantState.MOVING)
        started = time.monotonic()
        try:
            with src.transaction():
                copying.lock_events(src)
                with dst.transaction():
                    during = copying.copy_events(src, dst, head_position(dst))
                copying.freeze(src, target.display())
            progress("switch", during)
            tables, skipped = copying.copy_other_tables(src, dst)
            anchor = current_anchor(src)
            report = verify_chain(dst, anchor=anchor if anchor.position else None)
            if report.broken is not None or head_position(dst) != anchor.position:
                raise ServiceError(
                    Category.CONFLICT,
                    f"the copy of tenant {tenant!r} does not verify against the source's "
                    f"head {anchor}: {report.broken or 'the heads differ'}",
                )
            with found.connect() as conn:
                found.switch(conn, tenant, store)
        except BaseException:
            with Connection(source_url) as undo:
                copying.thaw(undo)
            with found.connect() as conn:
                found.set_state(conn, tenant, TenantState.ACTIVE)
            raise
    return MoveReport(
        tenant,
        source_url.display(),
        target.display(),
        before,
        during,
        tables,
        anchor.position,
        anchor.hash,
        time.monotonic() - started,
        skipped,
    )


@contextmanager
def _copy_refused() -> Iterator[None]:
    from ledger.stores.copying import CopyRefused

    try:
        yield
    except CopyRefused as exc:
        raise ServiceError(Category.CONFLICT, str(exc)) from exc


def _refuse_taken(tenants: list[Tenant], tenant: str, url: DatabaseURL) -> None:
    for other in tenants:
        if other.tenant == tenant:
            raise ServiceError(
                Category.CONFLICT, f"tenant {tenant!r} exists (its store: {other.url.display()})"
            )
        if same_store(other.url, url):
            raise ServiceError(
                Category.CONFLICT,
                f"store {url.display()} belongs to tenant {other.tenant!r}; "
                "tenants never share a store",
            )


def _parsed(text: str) -> DatabaseURL:
    try:
        return parse_database_url(text)
    except ConfigError as exc:
        raise ServiceError(Category.USAGE, f"tenant directory: {exc}") from exc


def tenant_summary(entry: Tenant) -> dict[str, str | None]:
    """What a door shows of a directory entry: its store's URL without the password."""
    return {
        "tenant": entry.tenant,
        "db": entry.url.display(),
        "server": entry.server,
        "state": entry.state.value,
        "rights": entry.rights,
        "added_at": entry.added_at,
    }
