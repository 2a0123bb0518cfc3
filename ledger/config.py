"""One URL configures the ledger's storage.

`sqlite:///PATH` (embedded, the default is `./ledger.db`) or
`postgresql://USER:PASSWORD@HOST:PORT/DBNAME?schema=NAME`. The URL comes from
`--db`, else `LEDGER_DATABASE_URL`, else the default. It is translated into the
eventsourcing library's own settings here, so users never set those.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from ledger.environment import AUTO_MIGRATE_ENV, DATABASE_URL_ENV

DEFAULT_DATABASE_URL = "sqlite:///ledger.db"
# Set to 0 for long-running workers when a one-shot `ledger db migrate` owns the schema.
# SQLite: how long a writer waits for another writer's transaction (an import
# holds the write lock until it commits) before giving up, in seconds.
DEFAULT_LOCK_TIMEOUT = 120
# PostgreSQL: how long an all-or-nothing import may wait for input inside its
# transaction (holding the write lock) before the server ends it, in seconds.
DEFAULT_IDLE_TIMEOUT = 120
# PostgreSQL: the append engine's pool holds up to this many connections, two of
# them kept open when idle.
DEFAULT_POOL_SIZE = 6
_POOL_KEPT = 2
# A PostgreSQL schema name the ledger can use unquoted and quoted alike.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def auto_migrate() -> bool:
    """Whether commands create missing tables on first use (LEDGER_AUTO_MIGRATE, on
    unless set to 0, no, false or n)."""
    return os.environ.get(AUTO_MIGRATE_ENV, "1").strip().lower() not in ("0", "no", "false", "n")


class ConfigError(ValueError):
    """A configuration value the ledger cannot use; the message says which and why."""


@dataclass(frozen=True)
class DatabaseURL:
    """Where the ledger is stored, parsed and checked: a SQLite file, or a PostgreSQL
    database and schema, with the connection's timeouts."""

    kind: Literal["sqlite", "postgresql"]
    path: str = ""
    host: str = "localhost"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    dbname: str = "postgres"
    schema: str = "public"
    connect_timeout: int = 5
    # PostgreSQL: connections the append engine's pool (the eventsourcing
    # library's) may hold at once; a caller waits up to connect_timeout for one.
    pool_size: int = DEFAULT_POOL_SIZE
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT

    def display(self) -> str:
        """The URL without its password, for messages and status output."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        return (
            f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}?schema={self.schema}"
        )

    def conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=self.dbname,
            connect_timeout=self.connect_timeout,
        )

    def library_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for this URL."""
        if self.kind == "sqlite":
            return {
                "PERSISTENCE_MODULE": "ledger.stores.sqlite:LedgerSQLiteFactory",
                "SQLITE_DBNAME": self.path,
                "SQLITE_LOCK_TIMEOUT": str(self.lock_timeout),
                "CREATE_TABLE": "y" if auto_migrate() else "n",
            }
        return {
            "PERSISTENCE_MODULE": "ledger.stores.postgres:LedgerPostgresFactory",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_CONNECT_TIMEOUT": str(self.connect_timeout),
            # An all-or-nothing import keeps its transaction open between batches
            # while it reads and validates input; the library's 5 s would kill a
            # slow one. Still bounded, so a stalled producer cannot hold the
            # write lock for ever.
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(self.idle_timeout),
            "POSTGRES_POOL_SIZE": str(min(_POOL_KEPT, self.pool_size)),
            "POSTGRES_MAX_OVERFLOW": str(self.pool_size - min(_POOL_KEPT, self.pool_size)),
            # Never the library's insert function: it skips the table lock, and a
            # tailing reader would miss events (docs/architecture.md, "The events
            # table").
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            "CREATE_TABLE": "y" if auto_migrate() else "n",
        }


def parse_database_url(url: str) -> DatabaseURL:
    """A `sqlite:///PATH` or `postgresql://...` URL, checked; ConfigError saying what is
    wrong otherwise."""
    if url.startswith("sqlite:///"):
        path, _, options = url[len("sqlite:///") :].partition("?")
        if not path:
            raise ConfigError(f"bad database URL {url!r}: sqlite:///PATH needs a file path")
        query = {k: v[-1] for k, v in parse_qs(options).items()}
        unknown = set(query) - {"lock_timeout"}
        if unknown:
            raise ConfigError(f"bad database URL {url!r}: unknown option {sorted(unknown)[0]!r}")
        lock_timeout = _whole_seconds(url, query, "lock_timeout", DEFAULT_LOCK_TIMEOUT)
        return DatabaseURL(kind="sqlite", path=path, lock_timeout=lock_timeout)
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"bad database URL {url!r}: expected sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None:
        port = 5432
    elif not 1 <= port <= 65535:
        raise ConfigError(f"bad database URL {url!r}: port must be a number from 1 to 65535")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"schema", "connect_timeout", "idle_timeout", "pool_size"}
    if unknown:
        raise ConfigError(f"bad database URL {url!r}: unknown option {sorted(unknown)[0]!r}")
    dbname = unquote(parts.path.lstrip("/")) or "postgres"
    timeout = _whole_seconds(url, query, "connect_timeout", 5)
    idle_timeout = _whole_seconds(url, query, "idle_timeout", DEFAULT_IDLE_TIMEOUT)
    pool_size = _positive(
        url, query, "pool_size", DEFAULT_POOL_SIZE, "a whole number of connections"
    )
    schema = query.get("schema", "public")
    if _SCHEMA_NAME.fullmatch(schema) is None:
        # Mixed case or anything SQL-like would be folded or need quoting in every
        # statement of every tool an operator uses; one plain name is unambiguous.
        raise ConfigError(
            f"bad database URL {url!r}: schema {schema!r} must be lower-case letters, "
            "digits and '_' (at most 63, not starting with a digit)"
        )
    return DatabaseURL(
        kind="postgresql",
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=dbname,
        schema=schema,
        connect_timeout=timeout,
        idle_timeout=idle_timeout,
        pool_size=pool_size,
    )


def _whole_seconds(url: str, query: dict[str, str], name: str, default: int) -> int:
    return _positive(url, query, name, default, "a whole number of seconds")


def _positive(url: str, query: dict[str, str], name: str, default: int, what: str) -> int:
    try:
        value = int(query.get(name, str(default)))
    except ValueError:
        value = -1
    if value < 1:
        raise ConfigError(f"bad database URL {url!r}: {name} must be {what}")
    return value


def database_url(cli_value: str | None = None) -> DatabaseURL:
    """The database URL given on the command line, else LEDGER_DATABASE_URL, else the default."""
    return parse_database_url(cli_value or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL)
