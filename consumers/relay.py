"""Placeholder until the Kafka relay lands."""

from __future__ import annotations

from ledger.db import Connection


def ensure_schema(conn: Connection) -> None:
    """Create the relay's tracking table if missing (idempotent)."""
