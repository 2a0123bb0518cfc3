"""What the write path needs from a store, beyond the library's recorder interface."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from eventsourcing.persistence import StoredEvent


class WriteSession(Protocol):
    """One database transaction holding the events table's write lock.

    Several batches can be inserted before it commits, so an all-or-nothing
    import of a large file is one transaction made of batched inserts."""

    def insert(self, stored_events: Sequence[StoredEvent]) -> list[int]: ...

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query inside this transaction (`?` placeholders, unqualified table
        names), so it sees the rows inserted so far, before they commit."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Inserts inside it are undone if it raises; the transaction goes on."""
        ...


class LedgerRecorder(Protocol):
    def write_session(self) -> AbstractContextManager[WriteSession]: ...

    def max_notification_id(self) -> int | None: ...
