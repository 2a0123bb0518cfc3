"""How the relay tells failures apart: retried, or fatal."""

from __future__ import annotations

import re
import sqlite3

from ledger.db import Connection
from ledger.errors import DatabaseUnavailable, loaded


class RelayFatal(RuntimeError):
    """A failure that retrying cannot fix; the message says what to change."""


def database_errors() -> tuple[type[BaseException], ...]:
    """The database's errors, retried with back-off (reconnecting). psycopg's
    only once psycopg is loaded (`ledger.errors.loaded`): importing it costs a
    relay command on SQLite a tenth of its start. (An `except` clause
    evaluates this only when an exception reaches it.)"""
    return (*loaded("psycopg", "Error"), sqlite3.Error, DatabaseUnavailable)


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
