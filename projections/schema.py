"""The read models' tables and tracking rows: created by `ledger db migrate`,
and on first use by commands unless LEDGER_AUTO_MIGRATE=0."""

from __future__ import annotations

from ledger.db import Connection
from projections import tracking
from projections.registry import PROJECTIONS
from projections.tables import create_table, existing_tables


class SchemaMissing(RuntimeError):
    """Read-model tables are missing and this process may not create them."""


def schema_ready(conn: Connection) -> bool:
    """Whether every read-model table and every projection's tracking row exists (reads
    only; takes no lock)."""
    tables = existing_tables(conn)
    if tracking.TRACKING_TABLE not in tables:
        return False
    if any(s.name not in tables for p in PROJECTIONS for s in p.tables):
        return False
    return set(tracking.read_all(conn)) >= {p.name for p in PROJECTIONS}


def ensure_schema(conn: Connection) -> None:
    """Create the read models' tables and tracking rows if missing (idempotent).

    Cheap when everything exists: a look at the catalogue, no write lock, so
    `ledger tab` does not queue behind a long import on SQLite."""
    if schema_ready(conn):
        return
    with conn.schema_transaction():
        tracking.create_tracking_table(conn)
        tables = existing_tables(conn)
        for projection in PROJECTIONS:
            for spec in projection.tables:
                if spec.name not in tables:
                    create_table(conn, spec, spec.name, indexes=True)
            tracking.insert(conn, projection.name, 0, projection.version, tracking.LIVE)


def require_schema(conn: Connection, create: bool) -> None:
    """Make sure the read models' tables exist: create them when `create`, else raise
    SchemaMissing if any is missing."""
    if create:
        ensure_schema(conn)
    elif not schema_ready(conn):
        raise SchemaMissing(
            "the read models' tables are missing: run `ledger db migrate` "
            "(LEDGER_AUTO_MIGRATE=0 stops commands from creating them)"
        )
