"""The key table (`Queries`: where its rows are read and written) and the check
of the store's format.

The key table (`ledger_keys`) lives in the ledger's database unless
LEDGER_KEYSTORE_URL names another one, so backups of events and of keys can have
different retention (a restored ledger backup must not bring erased keys back).
One row per customer: its data key wrapped (AES-256-GCM under the master key,
bound to the customer id), or NULL with `erased_at` set once the customer is
erased. The row of an erased customer stays as a tombstone: a new key is never
made for it, so nothing new can be stored readable.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from ledger.config import DatabaseURL, parse_database_url
from ledger.db import Connection, Lookup
from ledger.environment import KEYSTORE_URL_ENV
from ledger.keystore.errors import KeystoreError
from ledger.keystore.index_key import INDEX_KEYS_TABLE, create_index_keys_sql

KEYS_TABLE = "ledger_keys"
# Customers' stored keys: (customer_id, wrapped key, master id).
KEY_LOOKUP = Lookup(KEYS_TABLE, "customer_id", "customer_id", blob="wrapped", text="master_id")


class Queries(Protocol):
    """Where key rows are read and written: the keystore's own connection, or the
    append's write session when the keys live in the ledger's database."""

    @property
    def kind(self) -> str:
        """ "sqlite" or "postgresql": the SQL dialect of the store."""
        ...

    def fetchall(self, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run `statement` (`?` placeholders) and return its rows."""
        ...


def keystore_url(url: DatabaseURL) -> DatabaseURL:
    """The database holding the key table: LEDGER_KEYSTORE_URL's, else the ledger's own."""
    env = os.environ.get(KEYSTORE_URL_ENV)
    return parse_database_url(env) if env else url


def ensure_keys_table(conn: Connection) -> None:
    """Create the key table and the index-key table (`ledger.keystore.index_key`)
    if missing; when they exist, no write lock is taken."""
    if {KEYS_TABLE, INDEX_KEYS_TABLE} <= _tables(conn):
        return  # a reader never takes the write lock (SQLite: it would wait for writers)
    blob = "BLOB" if conn.kind == "sqlite" else "bytea"
    with conn.schema_transaction():
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (customer_id TEXT PRIMARY KEY, "
            f"wrapped {blob}, master_id TEXT, created_at TEXT NOT NULL, erased_at TEXT)"
        )
        conn.execute(create_index_keys_sql(conn.kind))


FORMAT_TABLE = "ledger_format"
# 2: personal values encrypted per customer. A store without this table but with
# events was written before (plaintext personal values) and is refused.
STORE_FORMAT = 2


def ensure_store_format(conn: Connection) -> None:
    """Record this store's format, or refuse a store written in an older one."""
    from ledger.stores.layout import EVENTS_TABLE

    tables = _tables(conn)
    if FORMAT_TABLE in tables:
        row = conn.fetchone(f"SELECT MAX(version) FROM {FORMAT_TABLE}")
        if row is not None and row[0] is not None and int(row[0]) == STORE_FORMAT:
            return
    if EVENTS_TABLE in tables and conn.fetchone(f"SELECT 1 FROM {EVENTS_TABLE} LIMIT 1"):
        raise KeystoreError(
            f"database {conn.url.display()} was written before per-customer encryption "
            "(its personal values are plaintext): this ledger cannot use it; append its "
            "events into a new database, then delete it (docs/privacy.md)"
        )
    with conn.schema_transaction():
        conn.execute(f"CREATE TABLE IF NOT EXISTS {FORMAT_TABLE} (version INTEGER NOT NULL)")
        if conn.fetchone(f"SELECT 1 FROM {FORMAT_TABLE}") is None:
            conn.execute(f"INSERT INTO {FORMAT_TABLE} (version) VALUES (?)", (STORE_FORMAT,))


def _tables(conn: Connection) -> set[str]:
    if conn.kind == "sqlite":
        rows = conn.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        # pg_tables lists every table, also those this role may not read (an
        # auditor's): information_schema would hide them.
        rows = conn.fetchall(
            "SELECT tablename FROM pg_tables WHERE schemaname = ?", (conn.url.schema,)
        )
    return {str(r[0]) for r in rows}
