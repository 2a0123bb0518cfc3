"""What the audit modules share: their error type and the events table check."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ledger.db import Connection

# Re-exported: the audit commands check for the events table before reading it.
from ledger.reading import events_table_exists as events_table_exists

# Positions are bigint on PostgreSQL and 64-bit integers on SQLite.
MAX_POSITION = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


class AuditError(ValueError):
    """Input the audit trail cannot act on; the message is one line for the user."""


def parse_position(text: str, what: str = "position") -> int:
    """A position as users type it: a positive integer, nothing else."""
    value = text.strip()
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_POSITION:
        raise AuditError(f"bad {what} {text!r}: expected a positive integer, e.g. 1042")
    return int(value)


def fetch_page(conn: Connection, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """A page of stored rows, in binary format on PostgreSQL (`Connection.fetch_binary`)."""
    return conn.fetch_binary(statement, params)
