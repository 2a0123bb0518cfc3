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


# Tenant workers (`projections run --follow --tenants`, `relay run --follow --tenants`),
# on the tenant directory's database. One class per purpose and kind of worker, so a
# projection worker's claims never block a relay worker's, nor either the ones above.
# Session-level: held while the worker's directory connection lives, so a worker
# that dies (or loses that connection) frees its tenants with it.
TENANT_LOCK_CLASSES = {"projections": 7243003, "relay": 7243004}
# Every live worker of a kind holds this lock of its directory in shared mode; the
# holders counted in pg_locks are the worker's peers (itself included).
WORKER_LOCK_CLASSES = {"projections": 7243005, "relay": 7243006}


def _key(text: str) -> int:
    return zlib.crc32(text.encode()) - 2**31


def tenant_lock_keys(kind: str, directory_schema: str, tenant: str) -> tuple[int, int]:
    """The lock a worker of `kind` ("projections" or "relay") holds while it owns
    `tenant` of the directory in `directory_schema`. Two tenants whose ids collide
    in the hash share a key: still never two owners of one tenant, at worst one
    worker owns both."""
    return TENANT_LOCK_CLASSES[kind], _key(f"ledger tenant {directory_schema}/{tenant}")


def worker_lock_keys(kind: str, directory_schema: str) -> tuple[int, int]:
    """The lock every live worker of `kind` on the directory in `directory_schema`
    holds shared (its holders are counted to share the tenants out evenly)."""
    return WORKER_LOCK_CLASSES[kind], _key(f"ledger workers {directory_schema}")
