"""The keyring: a ledger's unwrapped data keys, cached, found or made for each
batch an append stores, destroyed on erasure, rewrapped on a master-key rotation."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.config import DatabaseURL
from ledger.db import Connection, LookupRow, look_up
from ledger.environment import MASTER_KEY_ENV
from ledger.keystore.ciphers import unwrap, wrap
from ledger.keystore.errors import KeystoreError
from ledger.keystore.index_key import ensure_index_key, load_index_key, rewrap_index_keys
from ledger.keystore.master import (
    load_master,
    master_id,
    master_key_path,
    override_master_key_path,
)
from ledger.keystore.table import (
    KEY_LOOKUP,
    KEYS_TABLE,
    Queries,
    ensure_keys_table,
    ensure_store_format,
    keystore_url,
)

if TYPE_CHECKING:
    # Not at run time: a tab read loads this module, not the eventsourcing
    # library that ledger.stores needs (tests/integration/test_startup.py).
    from ledger.stores.base import WriteSession

# How long unwrapped keys are kept: a busy customer's key is unwrapped once per
# this interval, not per event, and an erasure by another process reaches this
# one's readers within it.
CACHE_SECONDS = 2.0
# Keys one append keeps at most (memory stays flat however many customers).
_PINNED_MAX = 10_000
# New keys per INSERT statement (4 parameters each).
_INSERT_ROWS = 200


@dataclass(frozen=True)
class KeyStatus:
    """What `ledger keys status` shows: where the keys and the master key are, the
    master key's id, how many customers have a key row, how many are erased, and how
    many keys are wrapped by another master key."""

    keystore: str
    master_key: str
    master_id: str
    customers: int
    erased: int
    other_master: int


@dataclass
class _Deferred:
    """Keys made and erased by an append deciding outside the write lock, kept
    until `Keyring.write_deferred` puts them in the transaction of its events."""

    made: list[tuple[str, bytes, str, str]]  # customer_id, wrapped, master_id, created_at
    destroyed: list[str]


@dataclass(frozen=True)
class KeyQuestion:
    """A batch's customers (`wanted`) and those of them whose keys must be looked
    up (`missing`), between `Keyring.ask` and `Keyring.answer`."""

    wanted: list[str]
    missing: list[str]


class Keyring:
    """The unwrapped data keys of one ledger, cached: a busy customer's key is
    unwrapped once per process, not per event. Erased customers map to None."""

    _instances: ClassVar[dict[DatabaseURL, Keyring]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self.store_url = keystore_url(url)
        self.shared = self.store_url == url
        self._master: bytes | None = None
        self._cache: dict[str, AESGCM | None] = {}
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._ready = False
        self._cached_at = time.monotonic()
        self._local = threading.local()
        self._index_key: bytes | None = None
        self._master_id: tuple[bytes, str] | None = None  # (master, its id), computed once

    @classmethod
    def for_url(cls, url: DatabaseURL) -> Keyring:
        """The process's one keyring of the ledger at `url`, made on first use."""
        with cls._instances_lock:
            ring = cls._instances.get(url)
            if ring is None:
                ring = cls._instances[url] = Keyring(url)
        return ring.ready()

    @classmethod
    def forget_all(cls) -> None:
        """Drop every cached key (after an erasure elsewhere, a rotation, tests)."""
        with cls._instances_lock:
            for ring in cls._instances.values():
                ring.close()
            cls._instances.clear()

    @classmethod
    def close_for(cls, url: DatabaseURL) -> None:
        """Close the keyring of the ledger at `url`, if one was made: its cached keys
        and its connection go (both come back on next use). A worker of many
        tenants does this for a tenant gone idle."""
        with cls._instances_lock:
            ring = cls._instances.get(url)
        if ring is not None:
            ring.close()

    def forget(self) -> None:
        """Drop the cached keys (they are read again when next needed)."""
        with self._lock:
            self._cache.clear()
        self._pinned.clear()

    def close(self) -> None:
        """Drop the cached keys and close the key store's connection."""
        with self._lock:
            self._cache.clear()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def master(self) -> bytes:
        """The master key, read (or, for an embedded ledger without one, generated) on first use."""
        if self._master is None:
            self._master = load_master(self.url)
        return self._master

    def _mine(self) -> str:
        """The master key's id (a hash: computed once per master key, not per key)."""
        master = self.master
        if self._master_id is None or self._master_id[0] is not master:
            self._master_id = (master, master_id(master))
        return self._master_id[1]

    def _store(self) -> Connection:
        if self._conn is not None and self._conn.broken:
            # Kept for the process's lifetime, it outlives a database restart: a
            # reader that retries after the failure gets a new one.
            self._conn.close()
            self._conn = None
        if self._conn is None:
            conn = Connection(self.store_url)
            try:
                if self.shared:
                    # The ledger's own database: its format is checked on this
                    # connection, before the key table is made (a connection less
                    # for every command).
                    ensure_store_format(conn)
                ensure_keys_table(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def ready(self) -> Keyring:
        """Open the key table (creating it) and load the master key, before any write
        transaction: on SQLite a second connection cannot write while one holds the
        lock."""
        with self._lock:
            if self._ready:
                return self
            if not self.shared:  # else checked as the key store's connection opens
                with Connection(self.url) as conn:
                    ensure_store_format(conn)
            # Made here, before any write transaction, like the key table (the
            # search's read model needs it inside the projections' transaction).
            ensure_index_key(self._store(), self.master)
            self._ready = True
        return self

    def index_key(self) -> bytes:
        """The search's index key (`ledger.keystore.index_key`), unwrapped once."""
        with self._lock:
            if self._index_key is None:
                self._index_key = load_index_key(self._store(), self.master)
            return self._index_key

    def _cipher(self, customer_id: str, row: tuple[Any, ...] | None) -> AESGCM | None:
        if row is None or row[0] is None:
            return None
        wrapped, wrapped_by = bytes(row[0]), row[1]
        mine = self._mine()
        if wrapped_by != mine:
            raise KeystoreError(
                f"the master key does not match the key table (keys wrapped by master id "
                f"{wrapped_by}, this key's id is {mine}): set {MASTER_KEY_ENV} to the right "
                "master key file"
            )
        try:
            return AESGCM(unwrap(self.master, customer_id, wrapped))
        except InvalidTag:
            raise KeystoreError(
                f"the data key of customer {customer_id!r} fails authentication under the "
                "master key: the key table was altered"
            ) from None

    def cipher(self, customer_id: str) -> AESGCM | None:
        """The customer's data key, None if erased or never given one."""
        pinned = self._pinned  # this thread's batch, which its transaction can see
        if customer_id in pinned:
            return pinned[customer_id]
        with self._lock:
            self._expire()
            if customer_id in self._cache:
                return self._cache[customer_id]
            row = self._store().fetchone(
                f"SELECT wrapped, master_id FROM {KEYS_TABLE} WHERE customer_id = ?",
                (customer_id,),
            )
            cipher = self._cipher(customer_id, row)
            # An unknown customer is not cached: its key may be created later.
            if row is not None:
                self._cache[customer_id] = cipher
            return cipher

    def warm(self, customer_ids: Iterable[str]) -> None:
        """Look up the keys of many customers in one query, not one each: a reader
        about to reveal a batch of rows (the relay reads a thousand at a time)."""
        with self._lock:
            # A period past half its life starts afresh here: otherwise it could end
            # while the batch is being revealed, and every customer after that point
            # would be looked up alone (the relay did so for whole batches).
            self._expire(CACHE_SECONDS / 2)
            wanted = [c for c in dict.fromkeys(customer_ids) if c not in self._cache]
            self._cache.update(self._stored_ciphers(self._store(), wanted))

    def _stored_ciphers(
        self, store: Queries, customer_ids: list[str]
    ) -> Iterator[tuple[str, AESGCM | None]]:
        """The stored keys of `customer_ids` (those that have one), in one statement."""
        return self._ciphers(look_up(store, [(KEY_LOOKUP, customer_ids)])[0])

    def _ciphers(self, rows: list[LookupRow]) -> Iterator[tuple[str, AESGCM | None]]:
        for customer_id, wrapped, wrapped_by in rows:
            yield customer_id, self._cipher(customer_id, (wrapped, wrapped_by))

    def _expire(self, after_s: float = CACHE_SECONDS) -> None:
        """Called under the lock. Another process may have erased a customer: a
        long-running reader (the API, the relay, a follower) sees it within
        CACHE_SECONDS."""
        now = time.monotonic()
        if now - self._cached_at > after_s:
            self._cache.clear()
            self._cached_at = now

    @property
    def _pinned(self) -> dict[str, AESGCM | None]:
        """This thread's batch: the keys `prepare` found or made, which `cipher` serves first.
        Per thread: appenders in several threads share this keyring, and a key made
        in one's open transaction must serve that transaction only (it may roll back)."""
        pinned: dict[str, AESGCM | None] | None = getattr(self._local, "pinned", None)
        if pinned is None:
            pinned = self._local.pinned = {}
        return pinned

    def release(self) -> None:
        """Forget this thread's batch (at the end of an append)."""
        self._pinned.clear()

    def ask(self, customer_ids: Iterable[str]) -> KeyQuestion:
        """The first half of `prepare`, for a caller that asks the key table along
        with other questions in one statement: the customers whose keys are not
        at hand (those cached are taken into this thread's batch now)."""
        wanted = sorted(set(customer_ids))
        pinned = self._pinned
        if len(pinned) + len(wanted) > _PINNED_MAX:
            pinned.clear()
        with self._lock:
            self._expire()
            # Only committed keys are in the shared cache (see `cipher`, `answer`).
            pinned.update(
                (c, self._cache[c]) for c in wanted if c in self._cache and c not in pinned
            )
        return KeyQuestion(wanted, [c for c in wanted if c not in pinned])

    def prepare(
        self,
        store: Queries,
        customer_ids: Iterable[str],
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> set[str]:
        """Give every customer in `customer_ids` a data key (in `store`'s transaction
        when the keys live in the ledger's database); returns the erased ones. The
        keys stay in this thread's batch until `release`, so an append looks each
        customer's key up once (a bounded number at a time)."""
        return self.answer(store, self.ask(customer_ids), None, random_bytes)

    def answer(
        self,
        store: Queries,
        question: KeyQuestion,
        stored: list[LookupRow] | None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> set[str]:
        """The second half of `prepare`: `stored` is what `KEY_LOOKUP` found of
        `question.missing` in `store` (None: not asked yet, asked here; a key table
        in another database is always asked here). Makes the keys still missing."""
        wanted, missing = question.wanted, question.missing
        pinned = self._pinned
        target: Queries = store if self.shared else self._store()
        if stored is None or not self.shared:
            stored = look_up(target, [(KEY_LOOKUP, missing)])[0]
        found = list(self._ciphers(stored))
        pinned.update(found)
        if found and _reads_committed(target):
            # Read outside any transaction, so committed: kept for the appends that
            # follow (the group writer's next groups) as `cipher` keeps a reader's,
            # until the cache expires or an erasure here drops the key.
            with self._lock:
                self._cache.update(found)
        new = [c for c in missing if c not in pinned]
        if not new:
            return {c for c in wanted if pinned.get(c) is None}
        mine = self._mine()
        now = datetime.now(UTC).isoformat()
        made: dict[str, bytes] = {}
        rows: list[tuple[str, bytes, str, str]] = []
        for customer_id in new:
            key = made[customer_id] = random_bytes(32)  # AES-256, as AESGCM.generate_key
            rows.append((customer_id, wrap(self.master, customer_id, key, random_bytes), mine, now))
        deferred = self._deferred
        if deferred is not None and self.shared:
            # Written with the events they seal, or not at all (`write_deferred`).
            deferred.made += rows
            pinned.update((c, AESGCM(key)) for c, key in made.items())
            return {c for c in wanted if pinned.get(c) is None}
        for customer_id in _insert_keys(target, rows):
            pinned[customer_id] = AESGCM(made[customer_id])
        for customer_id in new:
            if customer_id in pinned:
                continue
            # Another writer made it first (outside the write lock: --skip-invalid).
            row = target.fetchall(
                f"SELECT wrapped, master_id FROM {KEYS_TABLE} WHERE customer_id = ?",
                (customer_id,),
            )
            pinned[customer_id] = self._cipher(customer_id, row[0] if row else None)
        return {c for c in wanted if pinned.get(c) is None}

    def destroy(self, store: Queries, customer_id: str) -> None:
        """Erase the customer's data key (in `store`'s transaction when the keys live
        in the ledger's database). The row stays as a tombstone."""
        deferred = self._deferred
        if deferred is not None and self.shared:
            deferred.destroyed.append(customer_id)  # with the customer.erased it goes with
        else:
            _destroy_key(store if self.shared else self._store(), customer_id)
        self._pinned[customer_id] = None
        with self._lock:
            # Read again once committed (or not, if this transaction rolls back).
            self._cache.pop(customer_id, None)

    @property
    def _deferred(self) -> _Deferred | None:
        deferred: _Deferred | None = getattr(self._local, "deferred", None)
        return deferred

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """On this thread, keys made and destroyed (when the keys live in the
        ledger's database) are kept until `write_deferred`, not written at
        once: an append deciding outside the write lock may not store its events
        (a concurrent writer won), and its keys must go with them. What was not
        written when the block ends is dropped."""
        self._local.deferred = _Deferred([], [])
        try:
            yield
        finally:
            self._local.deferred = None

    def write_deferred(self, session: WriteSession) -> None:
        """Write the keys made and destroyed in this thread's `deferring` block, in
        `session`'s transaction (the events'). A key another writer gave the same
        customer meanwhile fails the session (IntegrityError, from the primary
        key, at the latest when it commits): events sealed with ours cannot be
        stored, and the append decides again. The new keys go in with
        `session.write`, which PostgreSQL sends with the commit."""
        deferred = self._deferred
        if deferred is None:
            return
        made, deferred.made = deferred.made, []
        destroyed, deferred.destroyed = deferred.destroyed, []
        for statement, params in _key_inserts(made):
            session.write(statement, params)
        for customer_id in destroyed:
            _destroy_key(session, customer_id)

    def checkpoint(self) -> None:
        """SQLite: move the WAL into the database file and truncate it, so an erased
        key's old page does not survive in the WAL."""
        if self.store_url.kind == "sqlite":
            with Connection(self.store_url) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def is_erased(self, customer_id: str) -> bool:
        """Whether the customer's key has been erased (a tombstone row in the key table)."""
        row = self._store().fetchone(
            f"SELECT erased_at FROM {KEYS_TABLE} WHERE customer_id = ?", (customer_id,)
        )
        return row is not None and row[0] is not None

    def status(self) -> KeyStatus:
        """The key table's counts against this process's master key (see KeyStatus)."""
        path, embedded = master_key_path(self.url)
        mine = master_id(self.master)
        conn = self._store()
        row = conn.fetchone(
            f"SELECT COUNT(*), COUNT(erased_at), "
            f"SUM(CASE WHEN wrapped IS NOT NULL AND master_id <> ? THEN 1 ELSE 0 END) "
            f"FROM {KEYS_TABLE}",
            (mine,),
        )
        assert row is not None
        return KeyStatus(
            keystore=self.store_url.display(),
            master_key=f"{path}{' (embedded default)' if embedded else ''}",
            master_id=mine,
            customers=int(row[0]),
            erased=int(row[1]),
            other_master=int(row[2] or 0),
        )

    def rotate_master(self, new_master: bytes) -> int:
        """Rewrap every data key and the index key under `new_master` in one transaction;
        returns how many data keys."""
        old = self.master
        new_id = master_id(new_master)
        conn = self._store()
        count = 0
        with conn.transaction():
            rows = conn.fetchall(
                f"SELECT customer_id, wrapped, master_id FROM {KEYS_TABLE} "
                "WHERE wrapped IS NOT NULL"
            )
            for customer_id, wrapped, _ in rows:
                self._cipher(customer_id, (wrapped, _))  # checks the old master
                key = unwrap(old, customer_id, bytes(wrapped))
                conn.execute(
                    f"UPDATE {KEYS_TABLE} SET wrapped = ?, master_id = ? WHERE customer_id = ?",
                    (wrap(new_master, customer_id, key), new_id, customer_id),
                )
                count += 1
            rewrap_index_keys(conn, old, new_master)
        self._master = new_master
        with self._lock:
            self._cache.clear()
        return count


def set_master_key_path(path: Path | None) -> None:
    """Use the master key in `path` (None: the variable or the default again);
    every cached keyring is dropped when that changes the key file."""
    if override_master_key_path(path):
        Keyring.forget_all()


def _reads_committed(store: Queries) -> bool:
    """`store` reads only committed rows: a connection outside any transaction (a
    write session sees its own uncommitted writes, keys it made included)."""
    return isinstance(store, Connection) and not store.in_transaction


def _key_inserts(
    rows: list[tuple[str, bytes, str, str]], tail: str = ""
) -> Iterator[tuple[str, list[Any]]]:
    """INSERTs of new key rows (customer_id, wrapped, master_id, created_at), a
    chunk a statement, each ending with `tail`; with their parameters."""
    for start in range(0, len(rows), _INSERT_ROWS):
        chunk = rows[start : start + _INSERT_ROWS]
        values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
        yield (
            f"INSERT INTO {KEYS_TABLE} (customer_id, wrapped, master_id, created_at) "
            f"VALUES {values}{tail}",
            [value for row in chunk for value in row],
        )


def _insert_keys(target: Queries, rows: list[tuple[str, bytes, str, str]]) -> Iterator[str]:
    """Insert new key rows; yields the customers whose row went in (not those
    that had one)."""
    tail = " ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id"
    for statement, params in _key_inserts(rows, tail):
        for (customer_id,) in target.fetchall(statement, params):
            yield customer_id


def _destroy_key(target: Queries, customer_id: str) -> None:
    """Erase a customer's data key, leaving its row as a tombstone."""
    now = datetime.now(UTC).isoformat()
    if target.kind == "sqlite":
        # The freed cell is zeroed, so the key's bytes do not linger in free pages.
        target.fetchall("PRAGMA secure_delete = ON")
    target.fetchall(
        f"INSERT INTO {KEYS_TABLE} (customer_id, wrapped, master_id, created_at, erased_at) "
        "VALUES (?, NULL, NULL, ?, ?) ON CONFLICT (customer_id) DO UPDATE SET "
        "wrapped = NULL, master_id = NULL, erased_at = excluded.erased_at "
        "RETURNING customer_id",
        (customer_id, now, now),
    )
