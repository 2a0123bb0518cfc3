"""Sharing tenants out among workers with PostgreSQL advisory locks on the tenant
directory's database: no scheduler of the ledger's own.

Every worker of a kind ("projections" or "relay") keeps one connection to the
directory's database. On it, it holds the worker lock of its kind in shared mode
(`ledger.locks.worker_lock_keys`), so that counting that lock's holders in
`pg_locks` counts the live workers, and one session-level lock per tenant it owns
(`ledger.locks.tenant_lock_keys`). A round (`TenantClaims.round`):

1. `peers` = the holders of the worker lock (itself included);
2. `share` = ceil(tenants / peers);
3. tenants gone from the directory (or from the worker's selection) are released,
   then owned tenants above `share`, highest ids first;
4. unowned tenants are tried with `pg_try_advisory_lock` until `share` are owned,
   in an order of the worker's own (a hash of its id and the tenant's), so peers
   starting together do not all try the same tenants first.

The server frees a session's locks when the session ends, so a worker that dies
frees its tenants at once (a lost host: once the server's TCP keepalive gives up
on the connection), and the next round of a live peer claims them. With a SQLite
directory there are no locks: one worker owns every tenant.
"""

from __future__ import annotations

import hashlib
import math
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.db import Connection
from ledger.locks import tenant_lock_keys, worker_lock_keys


@dataclass(frozen=True)
class RoundResult:
    """What one round changed: tenants claimed and released, and the peers counted."""

    claimed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    peers: int = 1
    share: int = 0


class TenantClaims:
    """One worker's claims on the directory's database (see the module docstring).
    Not thread-safe: one thread runs the rounds."""

    def __init__(self, conn: Connection, kind: str) -> None:
        self.conn = conn
        self.kind = kind
        self.owned: set[str] = set()
        self.worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._locking = conn.kind == "postgresql"
        self._schema = conn.url.schema
        if self._locking:
            conn.fetchone(
                "SELECT pg_advisory_lock_shared(?, ?)", worker_lock_keys(kind, self._schema)
            )

    @property
    def shared(self) -> bool:
        """Whether tenants are shared among workers (a PostgreSQL directory)."""
        return self._locking

    def peers(self) -> int:
        """The live workers of this kind on this directory, this one included."""
        if not self._locking:
            return 1
        cls, key = worker_lock_keys(self.kind, self._schema)
        row = self.conn.fetchone(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = ? AND objid::bigint = ? AND objsubid = 2",
            # pg_locks shows the two int4 keys as unsigned oids.
            (cls % 2**32, key % 2**32),
        )
        return max(1, int(row[0]) if row else 1)

    def round(self, tenants: Iterable[str], release: Iterable[str] = ()) -> RoundResult:
        """One round over the directory's `tenants` (the worker's selection of them).
        `release` names tenants the caller must let go of first. The caller stops
        work on released tenants before it calls `unlock` for them: this method
        only decides; `unlock` and the claims it makes change the locks."""
        wanted = sorted(set(tenants))
        peers = self.peers()
        share = math.ceil(len(wanted) / peers) if wanted else 0
        released = sorted(t for t in self.owned if t not in wanted or t in set(release))
        keep = sorted(self.owned - set(released))
        if len(keep) > share:
            released += keep[share:]
            keep = keep[:share]
        claimed: list[str] = []
        room = share - len(keep)
        for tenant in sorted((t for t in wanted if t not in self.owned), key=self._order):
            if room <= 0:
                break
            if self._try_lock(tenant):
                claimed.append(tenant)
                self.owned.add(tenant)
                room -= 1
        return RoundResult(claimed, sorted(released), peers, share)

    def unlock(self, tenant: str) -> None:
        """Let go of `tenant` (its work already stopped)."""
        if tenant not in self.owned:
            return
        self.owned.discard(tenant)
        if self._locking:
            self.conn.fetchone(
                "SELECT pg_advisory_unlock(?, ?)",
                tenant_lock_keys(self.kind, self._schema, tenant),
            )

    def close(self) -> None:
        """Close the directory connection: the server frees every lock it held."""
        self.owned.clear()
        try:
            self.conn.close()
        except Exception:  # a broken connection may fail to close; it is gone either way
            pass

    def _try_lock(self, tenant: str) -> bool:
        if not self._locking:
            return True
        row = self.conn.fetchone(
            "SELECT pg_try_advisory_lock(?, ?)", tenant_lock_keys(self.kind, self._schema, tenant)
        )
        return bool(row and row[0])

    def _order(self, tenant: str) -> bytes:
        return hashlib.blake2b(f"{self.worker_id}/{tenant}".encode(), digest_size=8).digest()
