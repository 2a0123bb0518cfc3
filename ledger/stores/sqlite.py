"""Embedded SQLite store: the library's SQLite recorders with the ledger's table.

Differences from the library's table, and why:
- `notification_id INTEGER PRIMARY KEY`: the library uses the implicit rowid,
  which VACUUM may renumber; positions must never change.
- positions and hash chain are assigned inside a `BEGIN IMMEDIATE` transaction,
  so writers are serialised and position order is commit order.
- triggers make UPDATE and DELETE of stored events fail.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
)

from ledger.chain import GENESIS_HASH
from ledger.stores.base import insert_savepoint
from ledger.stores.layout import EVENT_COLUMNS, EVENTS_TABLE
from ledger.stores.rows import EventRow, chained_rows, event_row


class SQLiteWriteSession:
    """The SQLite `WriteSession`: rows numbered and chained from the head it read under
    `BEGIN IMMEDIATE`, which holds the database's write lock until the commit."""

    kind = "sqlite"

    def __init__(self, cursor: SQLiteCursor, table: str) -> None:
        self._cursor = cursor
        self._table = table
        cursor.execute(
            f"SELECT notification_id, chain_hash FROM {table} ORDER BY notification_id DESC LIMIT 1"
        )
        row = cursor.fetchone()
        self._last_position: int = row[0] if row else 0
        self._last_hash: str = row[1] if row else GENESIS_HASH
        placeholders = ",".join("?" * len(EVENT_COLUMNS))
        self._insert = f"INSERT INTO {table} ({','.join(EVENT_COLUMNS)}) VALUES ({placeholders})"

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query inside the transaction, which sees the rows inserted so far."""
        self._cursor.execute(statement, params)
        return [tuple(r) for r in self._cursor.fetchall()]

    def write(self, statement: str, params: Sequence[Any] = ()) -> None:
        """A statement whose result is not read: run now (no round trips to save)."""
        self._cursor.execute(statement, params)

    def savepoint(self) -> AbstractContextManager[None]:
        """Inserts inside it are undone if it raises; the transaction goes on."""
        return insert_savepoint(self._cursor.execute)

    def insert(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        """`insert_rows` for the library's stored events; their positions."""
        return self.insert_rows([event_row(s) for s in stored_events])

    def insert_rows(self, rows: Sequence[EventRow]) -> list[int]:
        """Number `rows` after the last position, chain them to the last hash and insert
        them; their positions, in order."""
        chained = chained_rows(rows, self._last_position, self._last_hash)
        if not chained:
            return []
        self._cursor.executemany(self._insert, [(r[0], _oid(r[1]), *r[2:]) for r in chained])
        self._last_position, self._last_hash = chained[-1][0], chained[-1][-1]
        return [r[0] for r in chained]


def _oid(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class LedgerSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """The library's SQLite recorder on the ledger's events table (see the module
    docstring), with write sessions for the append path."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = EVENTS_TABLE):
        super().__init__(datastore, events_table_name)
        self.select_max_notification_id_statement = (
            f"SELECT MAX(notification_id) FROM {self.events_table_name}"
        )

    def construct_create_table_statements(self) -> list[str]:
        """The events table with explicit positions, its indexes (event id, subject, the
        one-customer claim on a created subject) and the triggers refusing UPDATE and
        DELETE."""
        t = self.events_table_name
        return [
            f"CREATE TABLE IF NOT EXISTS {t} ("
            "notification_id INTEGER PRIMARY KEY, "
            "originator_id TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, "
            "topic TEXT, "
            "state BLOB, "
            "event_id TEXT, "
            "customer_id TEXT, "
            "subject TEXT, "
            "creates_subject INTEGER NOT NULL DEFAULT 0, "
            "chain_hash TEXT NOT NULL, "
            "UNIQUE (originator_id, originator_version))",
            f"CREATE UNIQUE INDEX IF NOT EXISTS {t}_event_id ON {t} (event_id)",
            f"CREATE INDEX IF NOT EXISTS {t}_subject ON {t} (subject, notification_id) "
            "WHERE subject IS NOT NULL",
            # An order, task, dialogue, email or visit id belongs to one customer.
            f"CREATE UNIQUE INDEX IF NOT EXISTS {t}_subject_claim ON {t} (subject) "
            "WHERE creates_subject = 1",
            f"CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t} "
            "BEGIN SELECT RAISE(ABORT, 'ledger events are immutable: UPDATE refused'); END",
            f"CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t} "
            "BEGIN SELECT RAISE(ABORT, 'ledger events are immutable: DELETE refused'); END",
        ]

    @contextmanager
    def write_session(self, *, on_known_head: bool = False) -> Iterator[SQLiteWriteSession]:
        """One `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back
        (and the error translated to the library's) when it raises. `on_known_head`
        changes nothing here: the head is read in process, without a round trip."""
        with self.datastore.get_connection(commit=True) as conn:
            assert isinstance(conn, SQLiteConnection)
            cursor = conn.cursor()
            try:
                # IMMEDIATE takes the write lock now, before we read the chain's
                # head, so no other writer can slip in between.
                cursor.execute("BEGIN IMMEDIATE")
                yield SQLiteWriteSession(cursor, self.events_table_name)
                conn.commit()
            except BaseException as exc:
                conn.rollback()
                raise _translate(exc) from exc

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's insert, through a write session of its own, so its events are
        numbered and chained like any other."""
        with self.write_session() as session:
            return session.insert(stored_events)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's notification query on this table: rows by position from `start`
        (inclusive or not) up to `stop`, of the given topics."""
        clauses: list[str] = []
        params: list[Any] = []
        if start is not None:
            clauses.append("notification_id >= ?" if inclusive_of_start else "notification_id > ?")
            params.append(start)
        if stop is not None:
            clauses.append("notification_id <= ?")
            params.append(stop)
        if topics:
            clauses.append(f"topic IN ({','.join('?' * len(topics))})")
            params.extend(topics)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        statement = (
            "SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {self.events_table_name} {where}ORDER BY notification_id LIMIT ?"
        )
        params.append(limit)
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return [
                Notification(
                    id=row[0],
                    originator_id=self.convert_originator_id(row[1]),
                    originator_version=row[2],
                    topic=row[3],
                    state=row[4],
                )
                for row in c.fetchall()
            ]


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(exc)
    if isinstance(exc, sqlite3.OperationalError):
        return OperationalError(exc)
    if isinstance(exc, sqlite3.Error):
        return PersistenceError(exc)
    return exc


class LedgerSQLiteFactory(SQLiteFactory):
    """The library's SQLite factory, making the ledger's recorder."""

    application_recorder_class = LedgerSQLiteApplicationRecorder


Factory = LedgerSQLiteFactory
