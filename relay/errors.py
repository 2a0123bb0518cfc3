"""How the relay tells failures apart: retried, or fatal."""

from __future__ import annotations

import re
import sqlite3
import sys

from ledger.db import Connection
from ledger.errors import DatabaseUnavailable


class RelayFatal(RuntimeError):
    """A failure that retrying cannot fix; the message says what to change."""


def database_errors() -> tuple[type[BaseException], ...]:
    """The database's errors, retried with back-off (reconnecting). psycopg's
    only once psycopg is loaded: a process that never loaded it (on SQLite)
    cannot meet them, and importing it costs a relay command on SQLite a
    tenth of its start. (An `except` clause evaluates this only when an
    exception reaches it.)"""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (sqlite3.Error, DatabaseUnavailable)
    return (psycopg.Error, sqlite3.Error, DatabaseUnavailable)


def missing_table(exc: BaseException) -> bool:
    """`exc` says a table is missing (the ledger's schema is not in place)."""
    if isinstance(exc, sqlite3.OperationalError):
        return "no such table" in str(exc)
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.errors.UndefinedTable)


def describe(exc: BaseException | None) -> str:
    """One line for a log: kafka-python's errors read "[Error 59] UnknownProducerIdError: None"."""
    if exc is None:
        return "unknown failure"
    name = type(exc).__name__
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    text = re.sub(r"^\[Error -?\d+\]\s*", "", text)
    text = re.sub(r":\s*None$", "", text)
    if not text or text == name:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def close_quietly(conn: Connection) -> None:
    """Close a connection that is being discarded; a broken one's error on closing is ignored."""
    try:
        conn.close()
    except Exception:  # a broken connection is being discarded anyway
        pass
