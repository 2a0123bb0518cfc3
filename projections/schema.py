"""Placeholder until the read models land: their tables are created here."""

from __future__ import annotations

from ledger.db import Connection


def ensure_schema(conn: Connection) -> None:
    """Create the read models' tables if missing (idempotent)."""
