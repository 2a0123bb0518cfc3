"""Writers shared by the read models: rows appended to a table, and entity rows
(one per task, email, dialogue) changed in memory and written back once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ledger.db import Connection
from projections.base import Envelope, Writer

# Keeps IN lists well under both stores' parameter limits.
_KEYS_PER_SELECT = 500


def insert_rows(
    db: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` into `table` in bulk: COPY on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    names = ", ".join(columns)
    if db.kind == "postgresql":
        # COPY is the fastest way into PostgreSQL, and is transactional like INSERT.
        with db.raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    db.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


class AppendWriter(Writer):
    """Rows appended to one table (one per event or per change), written in one
    bulk insert at `flush`."""

    def __init__(self, db: Connection, table: str, columns: Sequence[str]) -> None:
        self.db = db
        self._table = table
        self._columns = tuple(columns)
        self.rows: list[tuple[Any, ...]] = []

    def flush(self) -> None:
        insert_rows(self.db, self._table, self._columns, self.rows)
        self.rows = []


class EntityWriter(Writer):
    """The rows of one entity table that the events taken in so far touch.
    Events change them in memory; `flush` writes each touched row once, so a
    busy dialogue costs one write per flush, not one per message. Rows born
    since the last flush go in with a bulk insert, rows read from the table are
    updated."""

    def __init__(self, db: Connection, table: str, columns: Sequence[str], key: str) -> None:
        self.db = db
        self._table = table
        self._columns = tuple(columns)
        self._key = key
        self._loaded: dict[str, dict[str, Any]] = {}
        self._new: dict[str, dict[str, Any]] = {}

    def _load(self, keys: Iterable[str]) -> None:
        """Fetch the stored rows for `keys` (those not already held)."""
        missing = sorted(set(keys) - self._loaded.keys() - self._new.keys())
        names = ", ".join(self._columns)
        for start in range(0, len(missing), _KEYS_PER_SELECT):
            chunk = missing[start : start + _KEYS_PER_SELECT]
            marks = ", ".join("?" * len(chunk))
            for row in self.db.fetchall(
                f"SELECT {names} FROM {self._table} WHERE {self._key} IN ({marks})", chunk
            ):
                record = dict(zip(self._columns, row, strict=True))
                self._loaded[record[self._key]] = record

    def load(self, keys: Iterable[str]) -> None:
        """Fetch the stored rows for `keys`, unless held already."""
        self._load(keys)

    def load_referenced(self, events: Sequence[Envelope]) -> None:
        """Fetch the rows `events` refer to but do not create, unless held already."""
        born: set[str] = set()
        wanted: set[str] = set()
        for e in events:
            key = str(e.subject_id())
            if e.payload().creates_subject:
                born.add(key)
            elif key not in born:
                wanted.add(key)
        self._load(wanted)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._new.get(key) or self._loaded.get(key)

    def born(self, row: dict[str, Any]) -> None:
        self._new[row[self._key]] = row

    def flush(self) -> None:
        columns = self._columns
        insert_rows(
            self.db,
            self._table,
            columns,
            [tuple(r[c] for c in columns) for r in self._new.values()],
        )
        changed = [c for c in columns if c != self._key]
        if self._loaded:
            self.db.executemany(
                f"UPDATE {self._table} SET {', '.join(f'{c} = ?' for c in changed)} "
                f"WHERE {self._key} = ?",
                [(*(r[c] for c in changed), r[self._key]) for r in self._loaded.values()],
            )
        self._new = {}
        self._loaded = {}
