"""The composition root: `Services` builds the configured store, application
and rights policy from settings; `prepare_store`, `store_ready` and `migrate`
make a store ready for the other services."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger.config import (
    ConfigError,
    DatabaseURL,
    auto_migrate,
    database_url,
)
from ledger.db import Connection
from ledger.environment import PEOPLE_FILE_ENV, RIGHTS_POLICY_ENV, TENANT_ENV
from ledger.people import Directory, load_directory
from ledger.reading import events_table_exists
from ledger.rights import RightsPolicy, load_policy
from projections.schema import SchemaMissing, ensure_schema, require_schema, schema_ready

# Imported where used: a tab read needs no eventsourcing library
# (tests/integration/test_startup.py).
if TYPE_CHECKING:
    from ledger.application import LedgerApplication
    from ledger.tenants import Tenant

from ledger.errors import MISSING_TABLES
from services.errors import Category, ServiceError, service_errors


@dataclass
class Services:
    """The composition root: one configured store and rights policy.

    `db_option` / `rights_option` are what the caller was given (a command-line
    option or a server setting); unset, the environment and defaults apply.
    `tenant_option` (else LEDGER_TENANT) names the store through the tenant
    directory (`tenants_option`, else LEDGER_TENANTS_URL) instead of `db_option`."""

    db_option: str | None = None
    rights_option: str | None = None
    _app: LedgerApplication | None = field(default=None, repr=False)
    _policy: RightsPolicy | None = field(default=None, repr=False)
    people_option: str | None = None
    _people: Directory | None = field(default=None, repr=False)
    # Appenders kept open between appends, at most this many idle (0: none; a
    # long-running server keeps some: services.appending.KeptAppenders).
    kept_appenders: int = 0
    tenant_option: str | None = None
    tenants_option: str | None = None
    _tenant: Tenant | None = field(default=None, repr=False)

    @property
    def tenant(self) -> str | None:
        """The tenant this composition acts on (None: a single-ledger store)."""
        return self.tenant_option or os.environ.get(TENANT_ENV) or None

    @property
    def url(self) -> DatabaseURL:
        entry = self.tenant_entry()
        if entry is not None:
            return entry.url
        try:
            return database_url(self.db_option)
        except ConfigError as exc:
            raise ServiceError(Category.USAGE, str(exc)) from exc

    def tenant_entry(self) -> Tenant | None:
        """The directory's entry for `tenant`, looked up once (None without a tenant)."""
        tenant = self.tenant
        if tenant is None:
            return None
        if self._tenant is None:
            if self.db_option:
                raise ServiceError(
                    Category.USAGE, "--db and --tenant both name the store: give one of them"
                )
            from services.tenants import directory, resolve_tenant

            self._tenant = resolve_tenant(directory(self.tenants_option), tenant)
        return self._tenant

    def app(self) -> LedgerApplication:
        if self._app is None:
            from ledger.application import LedgerApplication

            with service_errors():
                self._app = LedgerApplication(self.url)
            if self.kept_appenders:
                from services.appending import keep_appenders

                keep_appenders(self._app, self.kept_appenders)
        return self._app

    def connect(self) -> Connection:
        with service_errors():
            return Connection(self.url)

    def policy(self) -> RightsPolicy:
        if self._policy is None:
            entry = self.tenant_entry()
            own = entry.rights if entry is not None else None
            path = self.rights_option or own or os.environ.get(RIGHTS_POLICY_ENV) or None
            try:
                self._policy = load_policy(path)
            except ConfigError as exc:
                raise ServiceError(Category.USAGE, str(exc)) from exc
        return self._policy

    def people(self) -> Directory:
        """The people directory (`people_option`, else LEDGER_PEOPLE_FILE; empty
        without either)."""
        if self._people is None:
            path = self.people_option or os.environ.get(PEOPLE_FILE_ENV) or None
            try:
                self._people = load_directory(path)
            except ConfigError as exc:
                raise ServiceError(Category.USAGE, str(exc)) from exc
        return self._people

    def close(self) -> None:
        if self._app is not None:
            from services.appending import release_appenders

            release_appenders(self._app)
            self._app.close()
            self._app = None
            if self._tenant is not None:
                # A process serves many tenants over time: a tenant's key store
                # connection goes with its services (it comes back on next use).
                from ledger.keystore.keyring import Keyring

                Keyring.close_for(self._tenant.url)


def prepare_store(conn: Connection) -> None:
    """Events table and read-model tables in place, created on first use
    unless LEDGER_AUTO_MIGRATE=0."""
    with service_errors():
        if not events_table_exists(conn):
            if not auto_migrate():
                raise SchemaMissing(MISSING_TABLES)
            from ledger.application import LedgerApplication

            LedgerApplication(conn.url, create_tables=True).close()
        require_schema(conn, auto_migrate())


def store_ready(conn: Connection) -> bool:
    """The events table and every read model's tables are in place."""
    with service_errors():
        return events_table_exists(conn) and schema_ready(conn)


def migrate(url: DatabaseURL) -> None:
    """Create every table the ledger needs; idempotent and safe to run concurrently."""
    # Imported here: the relay package is not needed by a reader of tabs.
    from ledger.application import LedgerApplication
    from ledger.keystore.keyring import Keyring
    from relay.tracking import ensure_schema as ensure_relay_schema

    with service_errors():
        if url.kind == "postgresql":
            # A tenant's schema is made with its store (`ledger tenants add`).
            with Connection(url) as conn, conn.schema_transaction():
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{url.schema}"')
        LedgerApplication(url, create_tables=True).close()
        # Migrating opened the store's keyring; a process that migrates many
        # stores (tenants added, moved) must not keep a connection for each.
        Keyring.close_for(url)
        with Connection(url) as conn:
            ensure_schema(conn)
            ensure_relay_schema(conn)
