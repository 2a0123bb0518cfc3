"""PostgreSQL store: the library's PostgreSQL recorders with the ledger's table.

Differences from the library's table, and why:
- positions are assigned by us as `max + 1` under the library's
  `LOCK TABLE ... IN EXCLUSIVE MODE`, so position order is commit order and the
  hash chain can cover each row's position when it is written;
- rows go in with COPY, several times faster than the library's unnest insert;
- triggers make UPDATE, DELETE and TRUNCATE of stored events fail.
The library's reads (select_events, select_notifications, LISTEN/NOTIFY
subscriptions) work on this table unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from eventsourcing.utils import retry
from psycopg import Cursor, RawCursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.chain import GENESIS_HASH
from ledger.db import server_hung_up
from ledger.locks import DDL_LOCK_KEY
from ledger.stores.base import insert_savepoint
from ledger.stores.layout import EVENT_COLUMNS, EVENTS_TABLE
from ledger.stores.rows import EventRow, chained_rows, event_row


def copy_statement(schema: str, table: str) -> Composed:
    """Binary COPY into the events table's `EVENT_COLUMNS`: cheaper to write from
    Python than text COPY (no escaping of each value, bytea as is)."""
    return SQL("COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)").format(
        Identifier(schema),
        Identifier(table),
        SQL(", ").join(Identifier(c) for c in EVENT_COLUMNS),
    )


def copy_types(originator_id_type: str) -> list[str]:
    """The PostgreSQL types of `EVENT_COLUMNS`, which binary COPY must be told."""
    return [
        "int8",
        originator_id_type,
        "int8",
        "text",
        "bytea",
        "text",
        "text",
        "text",
        "bool",
        "text",
    ]


def copy_rows(
    cursor: Cursor[Any], statement: Composed, types: list[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Write chained rows (`EVENT_COLUMNS`) with one binary COPY."""
    oid_is_uuid = types[1] == "uuid"
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(typed_stream_id(row, oid_is_uuid))


def typed_stream_id(row: Sequence[Any], oid_is_uuid: bool) -> Sequence[Any]:
    """`row` with its stream id (`originator_id`) as the column's type declares it:
    it may come as text from a library stored event, or as a UUID, and binary
    values must match the declared type exactly."""
    oid = row[1]
    if oid_is_uuid == isinstance(oid, UUID):
        return row
    return (row[0], UUID(str(oid)) if oid_is_uuid else str(oid), *row[2:])


# After a session on a known head failed (another writer moved it), how long
# sessions ask for the head instead.
KNOWN_HEAD_PAUSE_S = 60.0

# Up to this many rows go in with one multi-row INSERT (sent with the COMMIT, one
# round trip); more with binary COPY (two round trips, less work per row).
INSERT_ROWS_MAX = 100


@dataclass(frozen=True)
class _Statements:
    """A recorder's write-session SQL as text, composed once: composing psycopg
    `sql` objects for every session showed in the group writer's CPU profile."""

    opening: str
    # What a session on a known head sends after BEGIN, with its insert and the
    # COMMIT (a pipeline takes no multi-statement text): the same statements
    # without the head query, in one DO block, which fails (unique_violation)
    # unless the last position is the one formatted in. One statement instead
    # of five: each costs the group writer its own Python in psycopg.
    known_head_opening: str
    insert_head: str  # "INSERT INTO ... VALUES ", completed by `insert`
    copy: Composed
    types: list[str]
    _inserts: dict[int, str] = field(default_factory=dict)

    def insert(self, rows: int) -> str:
        """The INSERT of `rows` rows, with PostgreSQL's own `$n` placeholders (for a
        `RawCursor`), made once per row count."""
        statement = self._inserts.get(rows)
        if statement is None:
            width = len(EVENT_COLUMNS)
            values = (
                "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                for r in range(rows)
            )
            statement = self._inserts[rows] = self.insert_head + ", ".join(values)
        return statement

    @classmethod
    def of(
        cls, conn: psycopg.Connection[Any], recorder: LedgerPostgresApplicationRecorder
    ) -> _Statements:
        schema, table = recorder.datastore.schema, recorder.events_table_name
        # The transaction's opening in one round trip, not six: the write lock, the
        # NOTIFY followers wait for, the session's search_path (for its own
        # queries; LOCAL: undone at the end) and the chain's head, which the lock
        # keeps current.
        parts = [
            SQL("BEGIN"),
            *recorder.lock_table_statements,
            SQL("NOTIFY {}").format(Identifier(recorder.channel_name)),
            SQL("SET LOCAL search_path TO {}").format(Identifier(schema)),
        ]
        opening = SQL("; ").join(
            [
                *parts,
                SQL(
                    "SELECT notification_id, chain_hash FROM {}.{} "
                    "ORDER BY notification_id DESC LIMIT 1"
                ).format(Identifier(schema), Identifier(table)),
            ]
        )
        # Every row in one statement with `$n` placeholders, run by a RawCursor:
        # psycopg converts a `%s` statement of more than 50 parameters anew on
        # every call (its cache stops there), and one statement per row (pipelined
        # executemany) cost the group writer ~50 us of Python per row; arrays per
        # column (unnest) are dumped in Python. Raw placeholders need no
        # conversion, the scalars are dumped in C, and each row count's statement
        # is prepared once it repeats.
        insert_head = SQL("INSERT INTO {}.{} ({}) VALUES ").format(
            Identifier(schema),
            Identifier(table),
            SQL(", ").join(map(Identifier, EVENT_COLUMNS)),
        )
        # Under the lock: the head is still the one assumed, or nothing is
        # written (the positions' unique index alone would let rows through
        # after a gap in another writer's positions). SET LOCAL in a DO block
        # lasts to the transaction's end, as outside one. (Schema names are
        # checked in ledger.config: no `$` can end the block early.)
        head_guard = SQL(
            "IF (SELECT COALESCE(MAX(notification_id), 0) FROM {}.{}) <> {{}} "
            "THEN RAISE unique_violation USING MESSAGE = "
            "'another writer moved the head of the events'; END IF"
        ).format(Identifier(schema), Identifier(table))
        known_head_opening = SQL("DO $$BEGIN {}; END$$").format(
            SQL("; ").join([*parts[1:], head_guard])
        )
        return cls(
            opening.as_string(conn),
            known_head_opening.as_string(conn),
            insert_head.as_string(conn),
            copy_statement(schema, table),
            copy_types(recorder.datastore.originator_id_type),
        )


class PostgresWriteSession:
    """A write transaction (see `LedgerPostgresApplicationRecorder.write_session`).

    A small insert (one multi-row INSERT) is held back until the session's next
    statement, or sent together with the COMMIT in one round trip (pipeline
    mode), so a group of one-event appends costs one round trip fewer; a row the
    store refuses then fails the commit instead of the insert, both inside the
    session, and inside a savepoint nothing is held back."""

    kind = "postgresql"

    def __init__(
        self, cursor: Cursor[Any], statements: _Statements, known_head: tuple[int, str] | None
    ) -> None:
        self._cursor = cursor
        self._sql = statements
        self._oid_is_uuid = statements.types[1] == "uuid"
        self._last_position, self._last_hash = known_head or (0, GENESIS_HASH)
        self._held: list[Sequence[Any]] | None = None  # rows of the next INSERT
        # Statements whose results nobody reads (`write`), sent before the held rows.
        self._writes: list[tuple[str, Sequence[Any]]] = []
        self._savepoints = 0
        self._raw: RawCursor[Any] | None = None
        # With a `known_head` (the one this recorder last committed), the
        # transaction's opening goes with the insert and the COMMIT, one round
        # trip in all (`LedgerPostgresApplicationRecorder.write_session`); without
        # one it opens now and reads the head.
        self._opened = False
        self._assumed = self.head  # the head assumed, checked at the commit
        if known_head is None:
            self._open()

    @property
    def head(self) -> tuple[int, str]:
        """The last position and chain hash written so far (or found)."""
        return self._last_position, self._last_hash

    def _open(self) -> None:
        """Open the transaction now (a statement needs it before the commit), on
        the head it finds, which must be the one assumed if rows are held."""
        if self._opened:
            return
        self._opened = True
        self._cursor.execute(self._sql.opening)
        while self._cursor.nextset():
            pass  # to the last statement's result: the head
        found = self._cursor.fetchone()
        head = (found[0], found[1]) if found else (0, GENESIS_HASH)
        if self._held is not None and head != self._assumed:
            raise IntegrityError("another writer moved the events' head meanwhile")
        if self._held is None:
            self._last_position, self._last_hash = head

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query inside the transaction (`?` placeholders), after sending any
        held-back insert, so it sees every row inserted so far."""
        self._open()
        self._send_held()
        with self._cursor.connection.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(statement.replace("?", "%s"), params)
            return cursor.fetchall()

    def write(self, statement: str, params: Sequence[Any] = ()) -> None:
        """A statement whose result is not read (`?` placeholders), held back like
        a small insert: sent before the session's next statement, or with the
        COMMIT (so the keys a group of one-event appends makes for new customers
        cost no round trips of their own); inside a savepoint, at once."""
        self._writes.append((statement.replace("?", "%s"), params))
        if self._savepoints:
            self._send_held()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inserts inside it are undone if it raises; the transaction goes on. Nothing
        is held back inside one, so a refused row fails here and not at the commit."""
        self._open()
        self._send_held()
        self._savepoints += 1
        try:
            with insert_savepoint(self._cursor.execute):
                yield
        finally:
            self._savepoints -= 1

    def insert(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        """`insert_rows` for the library's stored events; their positions."""
        return self.insert_rows([event_row(s) for s in stored_events])

    def insert_rows(self, rows: Sequence[EventRow]) -> list[int]:
        """Number `rows` after the last position, chain them to the last hash and write
        them (up to INSERT_ROWS_MAX held back for one INSERT, more by COPY); their
        positions."""
        if self._held is not None or len(rows) > INSERT_ROWS_MAX:
            self._open()
            self._send_held()
        chained = chained_rows(rows, self._last_position, self._last_hash)
        if not chained:
            return []
        if len(chained) <= INSERT_ROWS_MAX:
            self._held = [typed_stream_id(row, self._oid_is_uuid) for row in chained]
            if self._savepoints:
                self._send_held()
        else:
            copy_rows(self._cursor, self._sql.copy, self._sql.types, chained)
        self._last_position, self._last_hash = chained[-1][0], chained[-1][-1]
        return [r[0] for r in chained]

    def _send_held(self) -> None:
        """Send what is held back, in order: the writes, then the rows (the
        transaction is open, or they go in a pipeline with its opening)."""
        writes, self._writes = self._writes, []
        for statement, params in writes:
            self._cursor.execute(statement, params)
        if self._held is not None:
            rows, self._held = self._held, None
            self._insert_held(rows)

    def _insert_held(self, rows: list[Sequence[Any]]) -> None:
        """The held rows in one INSERT (in a pipeline: sent with what follows)."""
        params = [value for row in rows for value in row]
        self._raw_cursor().execute(self._sql.insert(len(rows)), params)

    def _raw_cursor(self) -> RawCursor[Any]:
        if self._raw is None:
            self._raw = RawCursor(self._cursor.connection)
        return self._raw

    def commit(self) -> None:
        """Commit, sending any held-back writes and insert in the same round trip
        as the COMMIT (and, not opened yet, the transaction's opening too: the
        insert's rows are numbered from the head assumed, and a check under the
        lock refuses them if another writer has moved it since)."""
        conn = self._cursor.connection
        if self._held is None and not self._writes:
            if self._opened:
                conn.commit()
            return
        with conn.pipeline():
            if not self._opened:
                self._cursor.execute("BEGIN")
                self._cursor.execute(self._sql.known_head_opening.format(int(self._assumed[0])))
            self._send_held()
            self._cursor.execute("COMMIT")


class LedgerPostgresApplicationRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL recorder on the ledger's events table (see the module
    docstring), with write sessions for the append path."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = EVENTS_TABLE):
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements = self._ledger_create_statements()
        self._statements: _Statements | None = None
        # The head after this recorder's last commit (None: unknown, or taken by
        # a session on it), and until when sessions ask for it after one failed.
        self._known_head: tuple[int, str] | None = None
        self._known_head_after = 0.0
        self._known_head_lock = threading.Lock()

    def _ledger_create_statements(self) -> list[Composed]:
        schema = Identifier(self.datastore.schema)
        t = self.events_table_name
        table = Identifier(t)
        fmt: dict[str, Any] = {"schema": schema, "table": table}
        statements = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                "notification_id bigint NOT NULL, "
                "originator_id {oid_type} NOT NULL, "
                "originator_version bigint NOT NULL, "
                "topic text, "
                "state bytea, "
                "event_id text, "
                "customer_id text, "
                "subject text, "
                "creates_subject boolean NOT NULL DEFAULT false, "
                "chain_hash text NOT NULL, "
                "PRIMARY KEY (originator_id, originator_version))"
            ).format(oid_type=Identifier(self.datastore.originator_id_type), **fmt),
            SQL(
                "CREATE UNIQUE INDEX IF NOT EXISTS {idx} ON {schema}.{table} (notification_id)"
            ).format(idx=Identifier(self.notification_id_index_name), **fmt),
            SQL("CREATE UNIQUE INDEX IF NOT EXISTS {idx} ON {schema}.{table} (event_id)").format(
                idx=Identifier(f"{t}_event_id_idx"), **fmt
            ),
            SQL(
                "CREATE INDEX IF NOT EXISTS {idx} ON {schema}.{table} (subject, notification_id) "
                "WHERE subject IS NOT NULL"
            ).format(idx=Identifier(f"{t}_subject_idx"), **fmt),
            # An order, task, dialogue, email or visit id belongs to one customer.
            SQL(
                "CREATE UNIQUE INDEX IF NOT EXISTS {idx} ON {schema}.{table} (subject) "
                "WHERE creates_subject"
            ).format(idx=Identifier(f"{t}_subject_claim_idx"), **fmt),
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.ledger_refuse_change() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'ledger events are immutable: % refused', TG_OP "
                "USING ERRCODE = 'insufficient_privilege'; END $$"
            ).format(**fmt),
            SQL("DROP TRIGGER IF EXISTS {name} ON {schema}.{table}").format(
                name=Identifier(f"{t}_no_update_delete"), **fmt
            ),
            SQL(
                "CREATE TRIGGER {name} BEFORE UPDATE OR DELETE ON {schema}.{table} "
                "FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_refuse_change()"
            ).format(name=Identifier(f"{t}_no_update_delete"), **fmt),
            SQL("DROP TRIGGER IF EXISTS {name} ON {schema}.{table}").format(
                name=Identifier(f"{t}_no_truncate"), **fmt
            ),
            SQL(
                "CREATE TRIGGER {name} BEFORE TRUNCATE ON {schema}.{table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {schema}.ledger_refuse_change()"
            ).format(name=Identifier(f"{t}_no_truncate"), **fmt),
        ]
        return statements

    def create_table(self) -> None:
        """Create the events table, its indexes and triggers unless all are in place,
        under the advisory DDL lock so processes starting together do not collide."""
        if self._schema_in_place():
            # Re-running the DDL would take table locks (DROP/CREATE TRIGGER takes
            # ACCESS EXCLUSIVE): a command starting during a long import would
            # queue for it, and every reader would queue behind that command.
            return
        # Several processes may start at once (relay, projector, CLI): serialise
        # DDL with an advisory lock instead of failing with "tuple concurrently updated".
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
            self._create_table(curs)

    def _schema_in_place(self) -> bool:
        """The events table, its indexes and its immutability triggers all exist."""
        t = self.events_table_name
        qualified = f"{self.datastore.schema}.{t}"
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT"
                " (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s)"
                "  AND tgname = ANY(%s)) AS triggers,"
                " (SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND tablename = %s"
                "  AND indexname = ANY(%s)) AS indexes",
                (
                    qualified,
                    [f"{t}_no_update_delete", f"{t}_no_truncate"],
                    self.datastore.schema,
                    t,
                    [
                        self.notification_id_index_name,
                        f"{t}_event_id_idx",
                        f"{t}_subject_idx",
                        f"{t}_subject_claim_idx",
                    ],
                ),
            )
            row = curs.fetchone()
        return row is not None and row["triggers"] == 2 and row["indexes"] == 4

    @contextmanager
    def live_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the library's pool that the server has not ended.

        The pool hands out its idle connections unchecked, and after a
        PostgreSQL restart every one of them is dead: each would fail the
        request it is given, once. So a connection is checked first (no round
        trip, see `server_hung_up`); a dead one is closed, which makes the pool
        replace it, and as its idle companions most likely died with it, the
        pool checks them all before a second one is taken."""
        with self.datastore.get_connection() as conn:
            if not server_hung_up(conn):
                yield conn
                return
            conn.close()
        self.datastore.pool.check()
        with self.datastore.get_connection() as conn:
            yield conn

    @contextmanager
    def write_session(self, *, on_known_head: bool = False) -> Iterator[PostgresWriteSession]:
        """One transaction holding the events table's lock (which also NOTIFYs
        followers), committed when the block ends and rolled back when it raises.

        `on_known_head` (a caller that retries an `IntegrityError`): when this
        recorder committed the last events it knows of and no such session
        failed lately, the session numbers and chains its rows from that head
        without asking, and opens with the commit, in one round trip instead of
        two. If another writer (another process) moved the head meanwhile, a
        check under the lock refuses the insert: `IntegrityError`, and for
        `KNOWN_HEAD_PAUSE_S` sessions ask again."""
        known = self._take_known_head() if on_known_head else None
        with self.live_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            if self._statements is None:
                self._statements = _Statements.of(conn, self)
            try:
                session = PostgresWriteSession(curs, self._statements, known)
                yield session
                session.commit()
            except BaseException:
                with suppress(psycopg.Error):  # a broken connection: the pool drops it
                    conn.rollback()
                if known is not None:
                    self._known_head_after = time.monotonic() + KNOWN_HEAD_PAUSE_S
                raise
        with self._known_head_lock:
            self._known_head = session.head

    def _take_known_head(self) -> tuple[int, str] | None:
        """The head this recorder committed last, for one session at a time
        (another one meanwhile asks), unless such a session failed lately."""
        with self._known_head_lock:
            known, self._known_head = self._known_head, None
        return known if time.monotonic() >= self._known_head_after else None

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's insert, through a write session of its own (so its events are
        numbered and chained like any other), retried on connection errors."""
        with self.write_session() as session:
            return session.insert(stored_events)


class LedgerPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, making the ledger's recorder."""

    application_recorder_class = LedgerPostgresApplicationRecorder
