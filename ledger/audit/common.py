"""What the audit modules share: their error type and the events table check."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.db import Connection

# Re-exported: the audit commands check for the events table before reading it.
from ledger.reading import events_table_exists as events_table_exists

# Positions are bigint on PostgreSQL and 64-bit integers on SQLite.
MAX_POSITION = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


class AuditError(ValueError):
    """Input the audit trail cannot act on; the message is one line for the user.

    A message that names a parameter is made with `naming`: `str()` gives the
    plain names (`since`), `spelled` the caller's (`--since` for the CLI)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.template: str | None = None
        self.parameters: tuple[str, ...] = ()

    @classmethod
    def naming(cls, template: str, *parameters: str) -> AuditError:
        """An error whose `template` names `parameters` as `{name}` fields. The
        template holds no text a user gave, so formatting it cannot fail."""
        error = cls(template.format(**{p: p for p in parameters}))
        error.template, error.parameters = template, parameters
        return error

    def spelled(self, names: Mapping[str, str]) -> str:
        """The message with each parameter it names as `names` spells it."""
        if self.template is None:
            return str(self)
        return self.template.format(**{p: names.get(p, p) for p in self.parameters})


def parse_position(text: str, what: str = "position") -> int:
    """A position as users type it: a positive integer, nothing else."""
    value = text.strip()
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_POSITION:
        raise AuditError(f"bad {what} {text!r}: expected a positive integer, e.g. 1042")
    return int(value)


def fetch_page(conn: Connection, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """A page of stored rows, in binary format on PostgreSQL (`Connection.fetch_binary`)."""
    return conn.fetch_binary(statement, params)
