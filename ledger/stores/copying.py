"""Copying a PostgreSQL store to another, for moving a tenant between servers.

Rows travel as PostgreSQL's binary COPY, block by block from one server to the
other: nothing is decoded, so every stored byte (positions, chain hashes, sealed
values) arrives as it left. A store that has been copied away is *frozen*: a
trigger refuses every new event with `MOVED_SQLSTATE`, so an append that was
waiting for the write lock during the switch fails (retryably) instead of
landing in a store nobody reads any more.
"""

from __future__ import annotations

from typing import Any

from psycopg.sql import SQL, Identifier, Literal

from ledger.db import Connection
from ledger.errors import MOVED_SQLSTATE
from ledger.reading import head_position
from ledger.stores.layout import EVENT_COLUMNS, EVENTS_TABLE

_FREEZE_TRIGGER = f"{EVENTS_TABLE}_moved_away"
_FREEZE_FUNCTION = "ledger_refuse_moved"


class CopyRefused(ValueError):
    """The destination cannot take the source's copy; the message says why."""


def base_tables(conn: Connection) -> list[str]:
    """The tables of the connection's schema (the store's), by name."""
    rows = conn.fetchall(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name",
        (conn.url.schema,),
    )
    return [str(r[0]) for r in rows]


def table_columns(conn: Connection, table: str) -> list[str]:
    """`table`'s columns in the store's schema, in their order."""
    rows = conn.fetchall(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        (conn.url.schema, table),
    )
    return [str(r[0]) for r in rows]


def lock_events(conn: Connection) -> None:
    """Take the events table's write lock, the one every append takes, inside the
    connection's open transaction: appends wait until it ends."""
    conn.raw.execute(
        SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
            Identifier(conn.url.schema), Identifier(EVENTS_TABLE)
        )
    )


def freeze(conn: Connection, destination: str) -> None:
    """Make the store refuse every new event from now on (in the caller's
    transaction, so it takes effect with it). `destination` goes into the
    refusal's message without its password."""
    schema = Identifier(conn.url.schema)
    message = f"this store was moved to {destination}: retry, the request goes there now"
    conn.raw.execute(
        SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{function}() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION USING MESSAGE = {message}, "
            "ERRCODE = {code}; END $$"
        ).format(
            schema=schema,
            function=Identifier(_FREEZE_FUNCTION),
            message=Literal(message),
            code=Literal(MOVED_SQLSTATE),
        )
    )
    conn.raw.execute(
        SQL(
            "CREATE OR REPLACE TRIGGER {name} BEFORE INSERT ON {schema}.{table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{function}()"
        ).format(
            name=Identifier(_FREEZE_TRIGGER),
            schema=schema,
            table=Identifier(EVENTS_TABLE),
            function=Identifier(_FREEZE_FUNCTION),
        )
    )


def thaw(conn: Connection) -> None:
    """Undo `freeze` (a move that failed after freezing gives the store back)."""
    conn.raw.execute(
        SQL("DROP TRIGGER IF EXISTS {} ON {}.{}").format(
            Identifier(_FREEZE_TRIGGER), Identifier(conn.url.schema), Identifier(EVENTS_TABLE)
        )
    )


def copy_events(source: Connection, destination: Connection, after: int) -> int:
    """Copy the events stored after position `after`, in position order, into the
    destination's events table inside the destination's open transaction; the
    number of events copied."""
    columns = SQL(", ").join(map(Identifier, EVENT_COLUMNS))
    out = SQL(
        "COPY (SELECT {columns} FROM {schema}.{table} WHERE notification_id > {after} "
        "ORDER BY notification_id) TO STDOUT (FORMAT BINARY)"
    ).format(
        columns=columns,
        schema=Identifier(source.url.schema),
        table=Identifier(EVENTS_TABLE),
        after=Literal(after),
    )
    inp = SQL("COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)").format(
        Identifier(destination.url.schema), Identifier(EVENTS_TABLE), columns
    )
    return _forward(source, destination, out, inp)


def replace_table(source: Connection, destination: Connection, table: str) -> int:
    """Make the destination's `table` hold exactly the source's rows (inside the
    destination's open transaction); the number of rows."""
    columns = table_columns(source, table)
    if columns != table_columns(destination, table):
        raise CopyRefused(
            f"table {table} differs between the two stores: run `ledger db migrate` on both"
        )
    names = SQL(", ").join(map(Identifier, columns))
    destination.raw.execute(
        SQL("DELETE FROM {}.{}").format(Identifier(destination.url.schema), Identifier(table))
    )
    out = SQL("COPY (SELECT {} FROM {}.{}) TO STDOUT (FORMAT BINARY)").format(
        names, Identifier(source.url.schema), Identifier(table)
    )
    inp = SQL("COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)").format(
        Identifier(destination.url.schema), Identifier(table), names
    )
    return _forward(source, destination, out, inp)


def _forward(source: Connection, destination: Connection, out: Any, inp: Any) -> int:
    """Stream `out`'s COPY blocks into `inp`; the rows written, as the server
    counted them (no second scan to count them)."""
    with source.raw.cursor() as reading, destination.raw.cursor() as writing:
        with reading.copy(out) as rows_out, writing.copy(inp) as rows_in:
            for block in rows_out:
                rows_in.write(block)
        return int(writing.rowcount)


def copy_prefix(source: Connection, destination: Connection) -> int:
    """Copy the events stored so far, in one destination transaction; the number
    copied. The destination may already hold a prefix of them (a move that stopped
    half-way), which must be the source's own: its last chain hash must match."""
    start = head_position(destination)
    if start:
        question = f"SELECT chain_hash FROM {EVENTS_TABLE} WHERE notification_id = ?"
        theirs = source.fetchone(question, (start,))
        if theirs is None or theirs != destination.fetchone(question, (start,)):
            raise CopyRefused(
                f"the destination holds other events than the source (position {start} "
                "differs): move to an empty store"
            )
    with destination.transaction():
        return copy_events(source, destination, start)


def copy_other_tables(
    source: Connection, destination: Connection
) -> tuple[dict[str, int], list[str]]:
    """Every table but the events, from one snapshot of the source, in one
    destination transaction: rows copied by table, and the source's tables the
    destination has none of (e.g. a blue/green rebuild's, which the destination's
    projections build again)."""
    theirs = set(base_tables(destination))
    copied: dict[str, int] = {}
    skipped: list[str] = []
    with source.raw.transaction():
        source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with destination.transaction():
            for table in base_tables(source):
                if table == EVENTS_TABLE:
                    continue
                if table not in theirs:
                    skipped.append(table)
                    continue
                copied[table] = replace_table(source, destination, table)
    return copied, skipped
