"""Batched writes shared by the read models: bulk inserts, and entity rows that
a batch loads once, changes in memory and writes back once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ledger.db import Connection
from projections.base import Envelope

# Keeps IN lists well under both stores' parameter limits.
_KEYS_PER_SELECT = 500


def insert_rows(
    db: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
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


class EntityBatch:
    """The rows of one entity table (one row per task, email, dialogue) that a
    batch touches. Events of the batch change them in memory; `save` writes
    each touched row once, so a busy dialogue costs one write per batch, not
    one per message. Rows born in the batch go in with a bulk insert, rows
    loaded from the table are updated."""

    def __init__(self, db: Connection, table: str, columns: Sequence[str], key: str) -> None:
        self._db = db
        self._table = table
        self._columns = tuple(columns)
        self._key = key
        self._loaded: dict[str, dict[str, Any]] = {}
        self._new: dict[str, dict[str, Any]] = {}

    def load(self, keys: Iterable[str]) -> None:
        """Fetch the stored rows for `keys` (those not born in this batch)."""
        missing = sorted(set(keys) - self._loaded.keys() - self._new.keys())
        names = ", ".join(self._columns)
        for start in range(0, len(missing), _KEYS_PER_SELECT):
            chunk = missing[start : start + _KEYS_PER_SELECT]
            marks = ", ".join("?" * len(chunk))
            for row in self._db.fetchall(
                f"SELECT {names} FROM {self._table} WHERE {self._key} IN ({marks})", chunk
            ):
                record = dict(zip(self._columns, row, strict=True))
                self._loaded[record[self._key]] = record

    def load_referenced(self, events: Sequence[Envelope]) -> None:
        """Fetch the rows the batch's events refer to but do not create."""
        born: set[str] = set()
        wanted: set[str] = set()
        for e in events:
            key = str(e.event.data.subject_id())
            if e.event.data.creates_subject:
                born.add(key)
            elif key not in born:
                wanted.add(key)
        self.load(wanted)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._new.get(key) or self._loaded.get(key)

    def add(self, row: dict[str, Any]) -> None:
        self._new[row[self._key]] = row

    def save(self) -> None:
        columns = self._columns
        insert_rows(
            self._db,
            self._table,
            columns,
            [tuple(r[c] for c in columns) for r in self._new.values()],
        )
        changed = [c for c in columns if c != self._key]
        if self._loaded:
            self._db.executemany(
                f"UPDATE {self._table} SET {', '.join(f'{c} = ?' for c in changed)} "
                f"WHERE {self._key} = ?",
                [(*(r[c] for c in changed), r[self._key]) for r in self._loaded.values()],
            )
