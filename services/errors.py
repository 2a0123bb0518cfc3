"""The service layer's errors: every failure a caller should see is a
`ServiceError` with a `Category`. The CLI maps categories to exit codes
(`cli/context.py`) and the API to HTTP statuses (`api/problems.py`), each in one
table. Messages name what is wrong, never a CLI flag or an HTTP parameter,
because both kinds of caller read them."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from ledger.config import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LOCK_TIMEOUT,
    ConfigError,
)
from ledger.db import DatabaseUnavailable, is_unavailable
from ledger.environment import DATABASE_URL_ENV
from ledger.keystore.errors import KeystoreError
from ledger.personal import TamperedValue
from ledger.printable import first_line
from projections import registry
from projections.schema import SchemaMissing


class Category(StrEnum):
    REJECTED = "rejected"  # the input breaks a contract or a rule
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"  # the rights policy refuses the acting user
    CONFLICT = "conflict"  # the subject's current state forbids the action
    UNAVAILABLE = "unavailable"  # the database cannot be reached
    USAGE = "usage"  # a bad parameter or configuration


@dataclass(frozen=True)
class RejectedField:
    """One reason one event was rejected; `index` is its 0-based place in the input."""

    index: int
    event_id: str | None
    type: str | None
    field: str
    reason: str


class ServiceError(Exception):
    def __init__(
        self, category: Category, message: str, errors: Iterable[RejectedField] = ()
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.errors = list(errors)


MISSING_TABLES = (
    "the ledger's tables are missing; run `ledger db migrate` "
    "(LEDGER_AUTO_MIGRATE=0 stops commands from creating them)"
)


def classify(exc: BaseException) -> ServiceError | None:
    """The category of an exception from anywhere below the service layer, or
    None for a bug (which callers report as an internal error)."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, SchemaMissing | ConfigError | registry.UnknownProjection):
        return ServiceError(Category.USAGE, str(exc))
    if isinstance(exc, _loaded("projections.targets", "ProjectionError")):
        return ServiceError(Category.REJECTED, str(exc))
    if isinstance(exc, KeystoreError):
        return ServiceError(Category.USAGE, str(exc))
    if isinstance(exc, TamperedValue):
        return ServiceError(Category.REJECTED, str(exc))
    if _is_missing_table(exc):
        return ServiceError(Category.USAGE, f"{first_line(exc)}: {MISSING_TABLES}")
    if _mentions(exc, "readonly database"):
        return ServiceError(
            Category.USAGE,
            f"the database is read-only: the file of the store ({DATABASE_URL_ENV}) "
            "and its directory must be writable",
        )
    if _mentions(exc, "database is locked"):
        return ServiceError(
            Category.UNAVAILABLE,
            "the database is locked: another writer held it longer than this command "
            "waits (raise it with sqlite:///PATH?lock_timeout=SECONDS; default "
            f"{DEFAULT_LOCK_TIMEOUT})",
        )
    if _mentions(exc, "idle-in-transaction timeout"):
        return ServiceError(
            Category.UNAVAILABLE,
            "the import waited for input longer than PostgreSQL lets a transaction sit "
            "idle, and the server ended it; nothing stored (feed the input faster, skip "
            "invalid events for a transaction per batch, or raise ?idle_timeout=SECONDS "
            f"in the URL; default {DEFAULT_IDLE_TIMEOUT})",
        )
    if _is_refused_value(exc):
        # e.g. a NUL character, which PostgreSQL text cannot hold; the
        # transaction rolled back, so nothing was stored.
        return ServiceError(
            Category.REJECTED, f"the database refused a value: {first_line(exc)}; nothing stored"
        )
    if isinstance(exc, DatabaseUnavailable):
        return ServiceError(Category.UNAVAILABLE, str(exc))
    if is_unavailable(exc):
        return ServiceError(Category.UNAVAILABLE, f"database unavailable: {first_line(exc)}")
    return None


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes `names` of `module` if it was imported, else none: an
    exception of a class never imported cannot have been raised, so classifying
    one imports nothing (psycopg or the runner, on a tab read that needs neither)."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found is not None else ()


def _is_refused_value(exc: BaseException) -> bool:
    refused = (
        *_loaded("psycopg", "DataError"),
        *_loaded("eventsourcing.persistence", "DataError"),
    )
    return any(isinstance(e, refused) for e in (exc, exc.__cause__))


def _mentions(exc: BaseException, text: str) -> bool:
    """A store error (or its cause) whose message says `text` (the driver's wording)."""
    return any(e is not None and text in str(e) for e in (exc, exc.__cause__))


def _is_missing_table(exc: BaseException) -> bool:
    """A table that `ledger db migrate` would have created, on either store."""
    undefined_table = _loaded("psycopg.errors", "UndefinedTable")
    persistence_error = _loaded("eventsourcing.persistence", "PersistenceError")
    for e in (exc, exc.__cause__):
        if isinstance(e, undefined_table):
            return True
        if isinstance(e, sqlite3.OperationalError) and "no such table" in str(e):
            return True
        if isinstance(e, persistence_error) and (
            ("does not exist" in str(e) and "relation" in str(e)) or "no such table" in str(e)
        ):
            return True
    return False


@contextmanager
def service_errors() -> Iterator[None]:
    """Known failures from below become ServiceErrors; bugs pass through."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as exc:
        known = classify(exc)
        if known is None:
            raise
        raise known from exc
