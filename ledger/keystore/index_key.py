"""The search's index key and the blind indexes made with it.

Personal values are encrypted at rest, so the customer search cannot compare
them; it compares blind indexes instead: an HMAC-SHA-256 of the normalised value
(`ledger.normalise`) under one random index key. The index key lives beside the
customers' data keys (`ledger_index_keys`, in the key table's database), wrapped
by the master key like them and rewrapped with them by `ledger keys
rotate-master`; the read model holds only HMACs, never a value.

One key serves every customer (a query must be comparable with every card), so
erasure does not destroy it: an erased customer's index entries are deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag

from ledger.db import Connection
from ledger.environment import MASTER_KEY_ENV
from ledger.keystore.ciphers import unwrap, wrap
from ledger.keystore.errors import KeystoreError
from ledger.keystore.master import master_id

INDEX_KEYS_TABLE = "ledger_index_keys"
SEARCH_INDEX = "search"
# HMACs are kept to 128 bits: no collision in any ledger's lifetime, half the
# index's size of the full 256.
_DIGEST_BYTES = 16


def _binding(name: str) -> str:
    # Bound like a data key to its customer id, but to a value no customer id can
    # be (the contracts refuse NUL): a data key's row cannot pass for this key.
    return f"\x00index key\x00{name}"


def create_index_keys_sql(kind: str) -> str:
    """The DDL of the index-key table."""
    blob = "BLOB" if kind == "sqlite" else "bytea"
    return (
        f"CREATE TABLE IF NOT EXISTS {INDEX_KEYS_TABLE} (name TEXT PRIMARY KEY, "
        f"wrapped {blob} NOT NULL, master_id TEXT NOT NULL, created_at TEXT NOT NULL)"
    )


def ensure_index_key(conn: Connection, master: bytes, name: str = SEARCH_INDEX) -> None:
    """Make the index key `name` if there is none (a reader takes no write lock)."""
    if conn.fetchone(f"SELECT 1 FROM {INDEX_KEYS_TABLE} WHERE name = ?", (name,)):
        return
    key = os.urandom(32)
    with conn.transaction():
        conn.execute(
            f"INSERT INTO {INDEX_KEYS_TABLE} (name, wrapped, master_id, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (
                name,
                wrap(master, _binding(name), key),
                master_id(master),
                datetime.now(UTC).isoformat(),
            ),
        )


def load_index_key(conn: Connection, master: bytes, name: str = SEARCH_INDEX) -> bytes:
    """The index key `name`, unwrapped; KeystoreError if missing, wrapped by another
    master key, or altered."""
    row = conn.fetchone(
        f"SELECT wrapped, master_id FROM {INDEX_KEYS_TABLE} WHERE name = ?", (name,)
    )
    if row is None:
        raise KeystoreError(f"the index key {name!r} is missing from {INDEX_KEYS_TABLE}")
    mine = master_id(master)
    if row[1] != mine:
        raise KeystoreError(
            f"the master key does not match the index key (wrapped by master id {row[1]}, "
            f"this key's id is {mine}): set {MASTER_KEY_ENV} to the right master key file"
        )
    try:
        return unwrap(master, _binding(name), bytes(row[0]))
    except InvalidTag:
        raise KeystoreError(
            f"the index key {name!r} fails authentication under the master key: "
            f"{INDEX_KEYS_TABLE} was altered"
        ) from None


def rewrap_index_keys(conn: Connection, old: bytes, new: bytes) -> int:
    """Inside the caller's transaction: every index key rewrapped under `new`."""
    count = 0
    new_id = master_id(new)
    for (name,) in conn.fetchall(f"SELECT name FROM {INDEX_KEYS_TABLE}"):
        key = load_index_key(conn, old, name)
        conn.execute(
            f"UPDATE {INDEX_KEYS_TABLE} SET wrapped = ?, master_id = ? WHERE name = ?",
            (wrap(new, _binding(name), key), new_id, name),
        )
        count += 1
    return count


def blind_index(key: bytes, kind: str, value: str) -> str:
    """The blind index of a normalised `value` of `kind` (phone, email, name):
    hex of a truncated HMAC-SHA-256, the kind bound in, so equal text of two kinds
    never matches."""
    message = f"{kind}\x00{value}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_DIGEST_BYTES].hex()
