"""What the stores report, by kind.

A driver (sqlite3, psycopg), psycopg's pool and the eventsourcing library
(which wraps the driver's error in its own class, `raise ... from`) each say
"the database went away" or "this value cannot be stored" in their own way.
`store_error` turns any of them into one of the kinds below, by class and by
the driver's error code, so the service layer maps each kind to one category
(`services.errors`) and nothing above the adapters reads a driver's message.

A module's classes count only once something imported it: none of its errors
can have been raised before, so recognising one imports nothing (psycopg on a
tab read of SQLite).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator

from ledger.config import DEFAULT_IDLE_TIMEOUT, DEFAULT_LOCK_TIMEOUT, DatabaseURL
from ledger.environment import DATABASE_URL_ENV
from ledger.printable import first_line, one_line


class StoreError(Exception):
    """A failure of the store a caller can act on; the message says what to do."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached or opened, or ended the session."""


def cannot_open(url: DatabaseURL, exc: BaseException) -> DatabaseUnavailable:
    """The database at `url` cannot be opened: its URL (without the password) and
    the driver's whole reason on one line (psycopg's ends with a hint on a line
    of its own: "Is the server running on that host...")."""
    return DatabaseUnavailable(f"cannot open database {url.display()}: {one_line(exc)}")


class PoolExhausted(DatabaseUnavailable):
    """No pooled connection came free within the pool's timeout."""


class DatabaseLocked(DatabaseUnavailable):
    """SQLite: another writer held the database longer than this one waits."""


class IdleTransactionEnded(DatabaseUnavailable):
    """PostgreSQL ended a transaction that waited for its input too long."""


class StoreMoved(DatabaseUnavailable):
    """The store was copied to another server (`ledger tenants move`) and takes no
    more events: the request should be retried, and will reach the new store."""


class StoreReadOnly(StoreError):
    """The store's file (or its directory) cannot be written."""


class TablesMissing(StoreError):
    """A table `ledger db migrate` creates is not there."""


class ValueRefused(StoreError):
    """The database refused a value (PostgreSQL text holds no NUL); the
    transaction rolled back, so nothing was stored."""


MISSING_TABLES = (
    "the ledger's tables are missing; run `ledger db migrate` "
    "(LEDGER_AUTO_MIGRATE=0 stops commands from creating them)"
)

# SQLite's primary result codes (`sqlite3.Error.sqlite_errorcode & 0xff`).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
# PostgreSQL's SQLSTATE for a session ended by idle_in_transaction_session_timeout.
_IDLE_IN_TRANSACTION_TIMEOUT = "25P03"
# The SQLSTATE a store frozen by a tenant's move refuses an append with
# (ledger.stores.copying.freeze).
MOVED_SQLSTATE = "LDM01"


def store_error(exc: BaseException) -> StoreError | None:
    """The kind of `exc` (or of an error it was raised from), or None when it is
    none of the store's (a bug, or a caller's own error)."""
    chain = list(causes(exc))
    for e in chain:
        if isinstance(e, StoreError):
            return e
    for e in chain:
        kind = _sqlite_kind(e) if isinstance(e, sqlite3.Error) else _postgres_kind(e)
        if kind is not None:
            return kind
    if any(isinstance(e, loaded("psycopg_pool", "PoolTimeout", "TooManyRequests")) for e in chain):
        return PoolExhausted(
            "no database connection came free in time (every one is busy, or the "
            "database does not answer); retry later"
        )
    unavailable = (
        *loaded("psycopg", "OperationalError", "InterfaceError"),
        *loaded("eventsourcing.persistence", "OperationalError", "InterfaceError"),
    )
    for e in chain:
        if isinstance(e, unavailable):
            return DatabaseUnavailable(f"database unavailable: {first_line(exc)}")
    return None


def is_unavailable(exc: BaseException) -> bool:
    """The database went away (or no connection came free in time), by kind."""
    return isinstance(store_error(exc), DatabaseUnavailable)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from (`raise ... from`), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _sqlite_kind(e: sqlite3.Error) -> StoreError | None:
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code == _SQLITE_READONLY:
        return StoreReadOnly(
            f"the database is read-only: the file of the store ({DATABASE_URL_ENV}) "
            "and its directory must be writable"
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return DatabaseLocked(
            "the database is locked: another writer held it longer than this command "
            "waits (raise it with sqlite:///PATH?lock_timeout=SECONDS; default "
            f"{DEFAULT_LOCK_TIMEOUT})"
        )
    # SQLite reports a missing table with its generic SQLITE_ERROR code: its
    # message is all that tells it apart.
    if isinstance(e, sqlite3.OperationalError) and str(e).startswith("no such table"):
        return TablesMissing(f"{first_line(e)}: {MISSING_TABLES}")
    if isinstance(e, sqlite3.OperationalError):
        return DatabaseUnavailable(f"database unavailable: {first_line(e)}")
    return None


def _postgres_kind(e: BaseException) -> StoreError | None:
    errors = sys.modules.get("psycopg.errors")
    if errors is None:
        return None
    # A schema-qualified name in a schema not made yet (`ledger db migrate` makes it).
    if isinstance(e, (errors.UndefinedTable, errors.InvalidSchemaName)):
        return TablesMissing(f"{first_line(e)}: {MISSING_TABLES}")
    sqlstate = getattr(e, "sqlstate", None)
    if isinstance(e, errors.IdleInTransactionSessionTimeout) or (
        sqlstate == _IDLE_IN_TRANSACTION_TIMEOUT
    ):
        return IdleTransactionEnded(
            "the import waited for input longer than PostgreSQL lets a transaction sit "
            "idle, and the server ended it; nothing stored (feed the input faster, skip "
            "invalid events for a transaction per batch, or raise ?idle_timeout=SECONDS "
            f"in the URL; default {DEFAULT_IDLE_TIMEOUT})"
        )
    if sqlstate == MOVED_SQLSTATE:
        return StoreMoved(f"{first_line(e)}; nothing stored")
    if isinstance(e, errors.DataError):
        # e.g. a NUL character, which PostgreSQL text cannot hold.
        return ValueRefused(f"the database refused a value: {first_line(e)}; nothing stored")
    return None


def loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes `names` of `module` if it was imported, else none: an
    exception of a class never imported cannot have been raised, so recognising
    one imports nothing."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found is not None else ()
