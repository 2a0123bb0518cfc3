"""Tenants: the directory's commands (add, list, move, remove) and resolving a
tenant id to its store, for every door that takes `--tenant`."""

from __future__ import annotations

import os

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
