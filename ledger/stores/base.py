"""What the write path needs from a store, beyond the library's recorder interface."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from eventsourcing.persistence import StoredEvent

from ledger.stores.rows import EventRow


class WriteSession(Protocol):
    """One database transaction holding the events table's write lock.

    Several batches can be inserted before it commits, so an all-or-nothing
    import of a large file is one transaction made of batched inserts."""

    @property
    def kind(self) -> str:
        """ "sqlite" or "postgresql": the SQL dialect of `fetchall`."""
        ...

    def insert(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        """Insert the library's stored events, numbered and chained after the rows
        already stored; returns their positions."""
        ...

    def insert_rows(self, rows: Sequence[EventRow]) -> list[int]:
        """`insert` for rows built directly (the append path); returns their positions."""
        ...

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query inside this transaction (`?` placeholders, unqualified table
        names), so it sees the rows inserted so far, before they commit."""
        ...

    def write(self, statement: str, params: Sequence[Any] = ()) -> None:
        """A statement inside this transaction whose result nobody reads (`?`
        placeholders, unqualified table names). A store may send it later, before
        the session's next statement or with the commit (PostgreSQL: in the
        commit's round trip); its failure then fails that, inside the session."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Inserts inside it are undone if it raises; the transaction goes on."""
        ...


@contextmanager
def insert_savepoint(execute: Callable[[str], object]) -> Iterator[None]:
    """`WriteSession.savepoint` for a DB-API cursor's `execute`; the SQL is the
    same on both stores."""
    execute("SAVEPOINT ledger_insert")
    try:
        yield
    except BaseException:
        execute("ROLLBACK TO SAVEPOINT ledger_insert")
        execute("RELEASE SAVEPOINT ledger_insert")
        raise
    execute("RELEASE SAVEPOINT ledger_insert")


class LedgerRecorder(Protocol):
    """What the append path needs from a recorder of either store."""

    def write_session(self, *, on_known_head: bool = False) -> AbstractContextManager[WriteSession]:
        """A transaction holding the events table's write lock, committed when the
        block ends and rolled back if it raises. `on_known_head`: the caller
        retries an `IntegrityError`, so a store may number the rows from the
        head it last wrote without asking, and let its indexes refuse them if
        another writer moved it (PostgreSQL: a round trip less)."""
        ...

    def max_notification_id(self) -> int | None:
        """The highest position stored; None while there is none."""
        ...
