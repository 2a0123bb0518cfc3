"""Read-model table definitions and their DDL on both stores.

A table exists under three physical names: the live one (`rm_tasks`), a
rebuild's shadow (`rm_tasks__rebuild`) and, for a moment after a swap, the
retired one (`rm_tasks__old`). Index and constraint names carry a random token
instead of the table's name: renaming a table keeps its indexes' names, and the
next shadow must be able to create its own without a clash.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from ledger.db import Connection

ColumnType = Literal["text", "int", "real"]

_SQL_TYPES: dict[str, dict[ColumnType, str]] = {
    "sqlite": {"text": "TEXT", "int": "INTEGER", "real": "REAL"},
    "postgresql": {"text": "text", "int": "bigint", "real": "double precision"},
}

SHADOW_SUFFIX = "__rebuild"
OLD_SUFFIX = "__old"


@dataclass(frozen=True)
class Index:
    """A query index of a read-model table; `suffix` names it after the table."""

    suffix: str
    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A read-model table's layout, and its DDL for either store under any physical name
    (live, shadow or old)."""

    name: str
    columns: tuple[tuple[str, ColumnType], ...]
    # Primary key: kept from the start because batches look rows up by it.
    key: tuple[str, ...] = ()
    # SQLite only: this integer column becomes the rowid, so rows arriving in
    # position order are appended to the table's b-tree instead of inserted into it.
    rowid: str | None = None
    # Query indexes: a rebuild creates them after its bulk load, which is
    # several times faster than maintaining them row by row.
    indexes: tuple[Index, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def shadow(self) -> str:
        return self.name + SHADOW_SUFFIX

    def old(self) -> str:
        return self.name + OLD_SUFFIX

    def create_table_sql(self, kind: str, physical: str, token: str) -> str:
        types = _SQL_TYPES[kind]
        parts = []
        for name, ctype in self.columns:
            if kind == "sqlite" and name == self.rowid:
                parts.append(f"{name} INTEGER PRIMARY KEY")
            else:
                not_null = " NOT NULL" if name in self.key or name == self.rowid else ""
                parts.append(f"{name} {types[ctype]}{not_null}")
        if self.key:
            parts.append(f"CONSTRAINT {self.name}_pk_{token} PRIMARY KEY ({', '.join(self.key)})")
        return f"CREATE TABLE {physical} ({', '.join(parts)})"

    def create_index_sql(self, physical: str, token: str) -> list[str]:
        return [
            f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {self.name}_{index.suffix}_{token} "
            f"ON {physical} ({', '.join(index.columns)})"
            for index in self.indexes
        ]


def new_token() -> str:
    """A random token for index and constraint names (see the module docstring)."""
    return secrets.token_hex(4)


def create_table(conn: Connection, spec: TableSpec, physical: str, *, indexes: bool) -> None:
    """Create `spec` as the table `physical`; with `indexes`, its query indexes too."""
    token = new_token()
    conn.execute(spec.create_table_sql(conn.kind, physical, token))
    if indexes:
        create_indexes(conn, spec, physical, token)


def create_indexes(conn: Connection, spec: TableSpec, physical: str, token: str = "") -> None:
    """Create `spec`'s query indexes on the table `physical`."""
    token = token or new_token()
    for statement in spec.create_index_sql(physical, token):
        conn.execute(statement)


def drop_table(conn: Connection, physical: str) -> None:
    """Drop the table `physical` if it exists."""
    conn.execute(f"DROP TABLE IF EXISTS {physical}")


def rename_table(conn: Connection, physical: str, new_name: str) -> None:
    """Rename the table `physical` to `new_name` (its indexes keep their names)."""
    conn.execute(f"ALTER TABLE {physical} RENAME TO {new_name}")


def existing_tables(conn: Connection) -> set[str]:
    """The names of the tables in the store (PostgreSQL: in the connection's schema)."""
    if conn.kind == "sqlite":
        rows = conn.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = conn.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {str(r[0]) for r in rows}
