"""Plain SQL access to the ledger's database, for readers that bypass the library
(projections, the audit trail, the relay). Statements use `?` placeholders on
both stores; on PostgreSQL they are rewritten to psycopg's `%s`."""

from __future__ import annotations

import select
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from ledger.config import DatabaseURL
from ledger.errors import cannot_open
from ledger.locks import DDL_LOCK_KEY

if TYPE_CHECKING:
    import psycopg


def server_hung_up(raw: psycopg.Connection[Any]) -> bool:
    """The server has ended this idle connection (it restarted, or an operator
    ended the session): every statement on it would fail.

    Known without a round trip in the usual case: a server that ends a session
    sends its reason and closes the socket, so an idle connection's socket then
    has something to read, while a healthy idle one has nothing. Only when
    something is there (which may also be a notice) is the connection asked,
    with an empty query. A connection inside a transaction is not touched."""
    import psycopg
    from psycopg.pq import TransactionStatus

    if raw.closed:
        return True
    if raw.info.transaction_status != TransactionStatus.IDLE or not raw.autocommit:
        return False
    try:
        # poll, not select: a busy server's sockets can be numbered past select's 1024.
        poller = select.poll()
        poller.register(raw.fileno(), select.POLLIN)
        if not poller.poll(0):
            return False
    except (OSError, ValueError):
        pass  # cannot tell without asking
    try:
        raw.execute("")
    except psycopg.Error:
        return True
    return False


class Connection:
    """One connection to the ledger's database, on either driver: `?` placeholders
    everywhere, autocommit outside `transaction()`."""

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self.kind = url.kind
        self._raw: sqlite3.Connection | psycopg.Connection[tuple[Any, ...]]
        if url.kind == "sqlite":
            self._raw = _open_sqlite(url)
        else:
            self._raw = _open_postgresql(url)

    @property
    def raw(self) -> Any:
        """The driver's own connection, for driver-specific work (COPY, LISTEN)."""
        return self._raw

    @property
    def broken(self) -> bool:
        """The server ended this connection (PostgreSQL: a restart, a cut): every
        further statement fails, and a new connection is needed. Checked before a
        kept connection is used again, so that a request after a restart does not
        fail on it (see `server_hung_up`)."""
        return not isinstance(self._raw, sqlite3.Connection) and server_hung_up(self._raw)

    @property
    def in_transaction(self) -> bool:
        """A transaction is open: its reads may see its own uncommitted writes."""
        if isinstance(self._raw, sqlite3.Connection):
            return self._raw.in_transaction
        from psycopg.pq import TransactionStatus

        return self._raw.info.transaction_status != TransactionStatus.IDLE

    def _sql(self, statement: str) -> str:
        return statement if self.kind == "sqlite" else statement.replace("?", "%s")

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return self._raw.execute(self._sql(statement), params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if isinstance(self._raw, sqlite3.Connection):
            self._raw.executemany(statement, rows)
        else:
            with self._raw.cursor() as cur:
                cur.executemany(self._sql(statement), rows)

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.execute(statement, params).fetchall())

    def fetch_binary(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`fetchall`, except that PostgreSQL sends the rows in binary format: a
        `bytea` column then arrives as raw bytes instead of hex text, which more than
        doubles the rate of a full scan of the events (measured: ~430,000 against
        ~180,000 rows/s). Same Python values as `fetchall`."""
        if isinstance(self._raw, sqlite3.Connection):
            return self.fetchall(statement, params)
        with self._raw.cursor(binary=True) as cursor:
            cursor.execute(self._sql(statement), params)
            return list(cursor.fetchall())

    def fetchone(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.execute(statement, params).fetchone()
        return tuple(row) if row is not None else None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        if isinstance(self._raw, sqlite3.Connection):
            self._raw.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._raw.execute("ROLLBACK")
                raise
            self._raw.execute("COMMIT")
        else:
            with self._raw.transaction():
                yield self

    @contextmanager
    def schema_transaction(self) -> Iterator[Connection]:
        """A write transaction for creating or changing tables, serialised across
        processes (see DDL_LOCK_KEY)."""
        with self.transaction():
            if self.kind == "postgresql":
                self.execute("SELECT pg_advisory_xact_lock(?)", (DDL_LOCK_KEY,))
            yield self

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def any_of(kind: str, column: str, values: Sequence[Any]) -> Iterator[tuple[str, list[Any]]]:
    """`column` equal to one of `values`, as (SQL condition, parameters) to run one
    query each: one `= ANY(?)` array on PostgreSQL (psycopg splits a long
    `IN (...)` list in Python; texts go as one literal, `pg_text_array`), `IN`
    lists of at most 500 on SQLite."""
    if not values:
        return
    if kind == "postgresql":
        if all(type(v) is str for v in values):
            yield f"{column} = ANY(?::text[])", [pg_text_array(values)]
        else:
            yield f"{column} = ANY(?)", [list(values)]
        return
    for start in range(0, len(values), 500):
        chunk = list(values[start : start + 500])
        yield f"{column} IN ({','.join('?' * len(chunk))})", chunk


def pg_array(values: Iterable[UUID | int]) -> str:
    """A PostgreSQL array literal of uuids or integers (cast it in the statement:
    `?::uuid[]`), sent as one text parameter: psycopg adapts a list element by
    element in Python, which cost a 200-customer batch about a millisecond a
    statement. Neither a uuid's hex nor an integer needs quoting."""
    return "{" + ",".join(v.hex if isinstance(v, UUID) else str(int(v)) for v in values) + "}"


def pg_text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of texts (cast it: `?::text[]`), sent as one
    parameter, as `pg_array` does for uuids: psycopg adapting a thousand event
    ids element by element took about 2.5 ms of a 1,000-event batch's lookup,
    against 0.9 ms for this. Every element is quoted (then `NULL`, braces,
    commas and spaces are plain text), and only `\\` and `"` are escaped within."""
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


class Queries(Protocol):
    """Something to run a query through: a `Connection`, or a write session (which
    also sees its own rows before they commit)."""

    @property
    def kind(self) -> str:
        """ "sqlite" or "postgresql": the SQL dialect of the store."""
        ...

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True)
class Lookup:
    """A question of the form "the rows of `table` whose `column` is one of these
    values", each row answered as (key, blob, text): the one shape every lookup
    shares, so that several run as one statement (`look_up`). `blob` and `text`
    are SQL expressions (None: the lookup needs no such column); `where`, an
    extra condition ending in AND, with its `where_params`."""

    table: str
    column: str
    key: str
    blob: str | None = None
    text: str | None = None
    where: str = ""
    where_params: tuple[Any, ...] = ()
    # One row a value that has rows, whose `text` aggregates over them (MAX ...).
    grouped: bool = False
    # With `grouped` (no blob): on PostgreSQL one index probe a value, for an
    # array of this SQL type, instead of reading every row of every value (the
    # planner may then scan the table).
    probe_type: str | None = None


LookupRow = tuple[Any, Any, Any]


def look_up(
    conn: Queries, questions: Sequence[tuple[Lookup, Sequence[Any]]]
) -> list[list[LookupRow]]:
    """The rows answering each (lookup, values), in the questions' order, from one
    statement (UNION ALL): on PostgreSQL each statement is a round trip, and a
    writer asks several of these before each batch. Nothing is asked when no
    question has values."""
    branches: list[str] = []
    params: list[Any] = []
    # PostgreSQL types a branch's bare NULL as text when it meets another bare
    # NULL first, and then cannot match it with a later branch's bytea.
    no_blob, no_text = ("NULL", "NULL") if conn.kind == "sqlite" else ("NULL::bytea", "NULL::text")
    for tag, (lookup, values) in enumerate(questions):
        blob, text = lookup.blob or no_blob, lookup.text or no_text
        if lookup.probe_type is not None and conn.kind == "postgresql":
            assert lookup.grouped, "a probe answers one row a value"
            if values:
                branches.append(
                    f"SELECT {tag}, CAST(p.v AS TEXT), {blob}, g.t "
                    f"FROM unnest(?::{lookup.probe_type}[]) AS p(v) "
                    f"CROSS JOIN LATERAL (SELECT {text} FROM {lookup.table} "
                    f"WHERE {lookup.column} = p.v) AS g(t) WHERE g.t IS NOT NULL"
                )
                params.append(pg_array(values))
            continue
        grouped = f" GROUP BY {lookup.column}" if lookup.grouped else ""
        for condition, chunk in any_of(conn.kind, lookup.column, values):
            branches.append(
                f"SELECT {tag}, {lookup.key}, {blob}, {text} "
                f"FROM {lookup.table} WHERE {lookup.where}{condition}{grouped}"
            )
            params += [*lookup.where_params, *chunk]
    answers: list[list[LookupRow]] = [[] for _ in questions]
    if branches:
        for tag, key, blob, text in conn.fetchall(" UNION ALL ".join(branches), params):
            answers[tag].append((key, blob, text))
    return answers


def _open_sqlite(url: DatabaseURL) -> sqlite3.Connection:
    try:
        # check_same_thread off: the API pools connections across its worker threads,
        # one request (one thread) at a time.
        raw = sqlite3.connect(
            url.path, isolation_level=None, timeout=url.lock_timeout, check_same_thread=False
        )
        raw.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise cannot_open(url, exc) from exc
    return raw


def _open_postgresql(url: DatabaseURL) -> psycopg.Connection[tuple[Any, ...]]:
    # Imported here: psycopg alone takes longer to import than a whole tab read
    # on the embedded store, which never needs it.
    import psycopg

    try:
        return psycopg.connect(
            url.conninfo(),
            autocommit=True,
            # Quoted as the recorders quote it (config allows only plain names).
            options=f'-c search_path="{url.schema}"',
        )
    except psycopg.Error as exc:
        raise cannot_open(url, exc) from exc
