"""PostgreSQL advisory-lock keys: every lock the ledger's processes take, in one place,
so no two purposes can ever share a key."""

from __future__ import annotations

import zlib

# Every process that creates tables (the recorders, read models, relay, audit views,
# subscribers) takes this transaction-level lock first: concurrent
# CREATE ... IF NOT EXISTS can otherwise fail with "tuple concurrently updated".
DDL_LOCK_KEY = 7243001

# First key of the relay's session-level locks (one running relay per tracking name
# and ledger).
RELAY_LOCK_CLASS = 7243002


def relay_lock_keys(schema: str, name: str) -> tuple[int, int]:
    """The two-key lock held by the relay with tracking name `name` of the ledger in
    `schema`. Advisory locks are per database: without the schema, two ledgers in
    one database would let only one of their relays of the same name run."""
    return RELAY_LOCK_CLASS, zlib.crc32(f"ledger relay {schema}.{name}".encode()) - 2**31
