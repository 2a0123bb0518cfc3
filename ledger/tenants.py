"""The tenant directory: which store holds each tenant (one shop of a hosted CRM).

A small table, `ledger_tenants`, in a control database of its own (PostgreSQL, or
SQLite for a small host): each row maps a tenant id to the URL of its store, a
schema on one of several PostgreSQL servers (or a database of its own), and
optionally its own rights policy. Everything of a tenant lives in its store: its
events, positions, hash chain and anchors, read models, wrapped data keys and
relay position. The directory only says where.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from ledger.config import ConfigError, DatabaseURL, parse_database_url
from ledger.db import Connection
from ledger.stores.layout import EVENTS_TABLE

TENANTS_TABLE = "ledger_tenants"

# Lower-case letters, digits, '-' and '_', starting with a letter or digit: a
# tenant id goes into Kafka keys (`TENANT/CUSTOMER_ID`), headers, metric labels
# and the default schema name, and must mean the same in all of them.
_TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class TenantState(StrEnum):
    """Whether a tenant's store takes appends now."""

    ACTIVE = "active"
    # `ledger tenants move` is switching the tenant's store: appends are refused
    # with a retryable answer until the directory names the new one.
    MOVING = "moving"


@dataclass(frozen=True)
class Tenant:
    """One row of the directory."""

    tenant: str
    db: str  # the store's URL as given, password included
    state: TenantState = TenantState.ACTIVE
    rights: str | None = None  # the tenant's rights policy file, if it has its own
    added_at: str = ""

    @property
    def url(self) -> DatabaseURL:
        return parse_database_url(self.db)

    @property
    def server(self) -> str:
        """The server (or file) the store is on, without credentials: what a
        per-server limit or metric is keyed by."""
        url = self.url
        if url.kind == "sqlite":
            return f"sqlite:///{url.path}"
        return f"postgresql://{url.host}:{url.port}/{url.dbname}"


def check_tenant_id(tenant: str) -> str:
    """`tenant` if it is a usable tenant id; ConfigError saying why not."""
    if _TENANT_ID.fullmatch(tenant) is None:
        raise ConfigError(
            f"bad tenant id {tenant!r}: use 1 to 63 lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    return tenant


def tenant_store_url(tenant: str, db: str) -> str:
    """The store URL for `tenant` given `db`: a PostgreSQL URL that names no schema
    gets the tenant's own (`tenant_ID`, '-' as '_'), so two tenants given one
    server URL never share a schema."""
    url = parse_database_url(db)
    if url.kind == "postgresql" and "schema=" not in db.partition("?")[2]:
        sep = "&" if "?" in db else "?"
        return f"{db}{sep}schema=tenant_{tenant.replace('-', '_')}"
    return db


def same_store(a: DatabaseURL, b: DatabaseURL) -> bool:
    """Whether two URLs name one store (credentials and timeouts aside)."""
    if a.kind != b.kind:
        return False
    if a.kind == "sqlite":
        return a.path == b.path
    return (a.host, a.port, a.dbname, a.schema) == (b.host, b.port, b.dbname, b.schema)


class TenantDirectory:
    """The directory table in its control database."""

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with Connection(self.url) as conn:
            yield conn

    def ensure(self, conn: Connection) -> None:
        """Create the directory table if missing (idempotent, safe concurrently)."""
        with conn.schema_transaction():
            if conn.kind == "postgresql":
                # Config allows only plain schema names: safe to quote.
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{conn.url.schema}"')
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TENANTS_TABLE} ("
                "tenant TEXT PRIMARY KEY, db TEXT NOT NULL, state TEXT NOT NULL, "
                "rights TEXT, added_at TEXT NOT NULL)"
            )

    def get(self, conn: Connection, tenant: str) -> Tenant | None:
        row = conn.fetchone(
            f"SELECT tenant, db, state, rights, added_at FROM {TENANTS_TABLE} WHERE tenant = ?",
            (tenant,),
        )
        return None if row is None else _tenant(row)

    def all(self, conn: Connection) -> list[Tenant]:
        rows = conn.fetchall(
            f"SELECT tenant, db, state, rights, added_at FROM {TENANTS_TABLE} ORDER BY tenant"
        )
        return [_tenant(row) for row in rows]

    def add(self, conn: Connection, tenant: str, db: str, rights: str | None) -> Tenant:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        conn.execute(
            f"INSERT INTO {TENANTS_TABLE} (tenant, db, state, rights, added_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (tenant, db, TenantState.ACTIVE.value, rights, now),
        )
        return Tenant(tenant, db, TenantState.ACTIVE, rights, now)

    def set_state(self, conn: Connection, tenant: str, state: TenantState) -> None:
        conn.execute(
            f"UPDATE {TENANTS_TABLE} SET state = ? WHERE tenant = ?", (state.value, tenant)
        )

    def switch(self, conn: Connection, tenant: str, db: str) -> None:
        """Point `tenant` at the store `db`, active again."""
        conn.execute(
            f"UPDATE {TENANTS_TABLE} SET db = ?, state = ? WHERE tenant = ?",
            (db, TenantState.ACTIVE.value, tenant),
        )

    def remove(self, conn: Connection, tenant: str) -> bool:
        cursor = conn.execute(f"DELETE FROM {TENANTS_TABLE} WHERE tenant = ?", (tenant,))
        return bool(cursor.rowcount)


def _tenant(row: tuple[object, ...]) -> Tenant:
    tenant, db, state, rights, added_at = row
    return Tenant(
        str(tenant),
        str(db),
        TenantState(str(state)),
        None if rights is None else str(rights),
        str(added_at),
    )


def heads_statement(schemas: Mapping[str, str | None], *trackers: str) -> tuple[str, list[str]]:
    """One statement (`?` placeholders) that reads, a row a tenant, the tenant,
    its newest event's position (NULL: none yet), then the least `position` of
    each tracking table in `trackers` (how far its slowest reader got; NULL: no
    row). `schemas` maps each tenant to its PostgreSQL schema, all on one
    server (a statement for all of them: the workers' wake-up and the tenants'
    metrics ask it for hundreds at once), or to None for the one tenant of the
    store the statement runs against (SQLite)."""
    branches: list[str] = []
    for schema in schemas.values():
        # Schema names are checked plain names (ledger.config): safe to quote.
        prefix = f'"{schema}".' if schema else ""
        columns = [f"(SELECT MAX(notification_id) FROM {prefix}{EVENTS_TABLE})"]
        columns += [f"(SELECT MIN(position) FROM {prefix}{table})" for table in trackers]
        branches.append(f"SELECT CAST(? AS TEXT), {', '.join(columns)}")
    return " UNION ALL ".join(branches), list(schemas)
