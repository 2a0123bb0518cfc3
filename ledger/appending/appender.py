"""The append engine's entry point, `Appender`: validate producer events and store
them, in batches.

Both the CLI and any API call this. Each event is checked against its contract,
then against the rules given the stored state plus the earlier events of the
same input.

Deciding (validation, loading customers' states, the rules, building rows)
happens outside the events table's write lock wherever it can, so that a slow
batch does not hold up other writers: the lock is taken only to insert and
commit. A batch decided so is stored optimistically; if a concurrent writer's
commit changed what it was decided on (the same customer stream version, event
id, claimed subject or new data key), the insert fails and the batch is decided
again, a few times, then under the lock, where nothing can conflict. A rule's
refusal is trusted only once decided on customers' states read afresh, as a
cached state may be stale. Keys made or destroyed while deciding are written in
the transaction of the events they go with (`Keyring.deferring`).

All-or-nothing (the default) decides an input of one batch so. A longer input
runs in one transaction that holds the write lock from the start: batches are
inserted as they are validated; at the first rejection inserting stops,
validation goes on so every rejection is reported, and the transaction rolls
back. With `skip_invalid` each batch commits on its own, decided outside the
lock as above. Under the lock a row the store still refuses is that event's
fault: the batch is retried one event at a time and the refused event becomes
a rejection. All-or-nothing finds a refused row the same way, under a
savepoint, and rejects it.

Memory stays flat however long the input: event ids and claimed subjects are
looked up in the store once inserted, and only the most recently used customers'
states are kept (`customer_cache`); an evicted customer is reloaded from the
store through the same session, which sees the rows it inserted before they
commit. So all-or-nothing inserts every accepted batch even after a rejection
(the rollback at the end undoes them): what the input decided is then always in
the store. Only once the store refuses a row that was decided as accepted does
the rest of the input stay in memory, as the store can no longer answer for it.
Snapshots are written through the same session too, so they commit or roll back
with the events they summarise, and an evicted customer reloads from a snapshot
plus a few events (`REPLAY_LIMIT`).
"""

from __future__ import annotations

import gc
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from itertools import chain, islice
from types import TracebackType

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
)

from ledger.appending.deciding import DEFAULT_CUSTOMER_CACHE, Decider, Decision
from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.entropy import SYSTEM, Entropy
from ledger.errors import StoreMoved, store_error
from ledger.input import InputItem
from ledger.rights import ALLOW_ALL, RightsPolicy
from ledger.stores.base import WriteSession

DEFAULT_BATCH_SIZE = 1000
OPTIMISTIC_ATTEMPTS = 5
# After losing a race to insert, how long an appender checks its kept states
# against the store before deciding on them; after an event id or subject it
# left to the store's indexes turned out taken, how long it asks for them first.
CONTENDED_S = 60.0
# The jitter of a retry after a lost race: a generator of its own, so appends
# neither draw from nor disturb the process's `random` (a caller's seeded runs).
_JITTER = random.Random()


class _Abort(Exception):
    """Rolls back an all-or-nothing transaction once rejections are known."""


class Appender(Decider):
    """Appends producer input; use as a context manager (it holds a connection)."""

    def __init__(
        self,
        app: LedgerApplication,
        policy: RightsPolicy = ALLOW_ALL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        customer_cache: int = DEFAULT_CUSTOMER_CACHE,
        entropy: Entropy = SYSTEM,
        *,
        track_lines: bool = False,
    ) -> None:
        super().__init__(app, policy, customer_cache, entropy)
        self.batch_size = batch_size
        self.track_lines = track_lines  # reports say which lines were stored
        self._db = Connection(app.url)
        # Until when kept states are checked before deciding, and until when the
        # store is asked for given ids and created subjects (`_commit_optimistically`).
        self._contended_until = 0.0
        self._verify_until = 0.0

    def close(self) -> None:
        """Close the appender's own connection."""
        self._db.close()

    @property
    def broken(self) -> bool:
        """The server ended its connection (a restart): a kept Appender must be
        replaced before its next append, which would fail."""
        return self._db.broken

    def __enter__(self) -> Appender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def append(self, items: Iterable[InputItem], *, skip_invalid: bool = False) -> AppendReport:
        """Append `items` all-or-nothing, or with `skip_invalid` store the valid ones a
        batch at a time (see the module docstring); every rejection is in the report."""
        try:
            with _collector_paused():
                if skip_invalid:
                    return self.append_valid(items)
                return self.append_all_or_nothing(items)
        finally:
            ring = self.app.ledger_mapper.keyring
            if ring is not None:
                # This thread's batch keys: readers on this thread go back to the
                # shared cache, which notices another process's erasure.
                ring.release()

    # -- all or nothing ---------------------------------------------------------------

    def append_all_or_nothing(self, items: Iterable[InputItem]) -> AppendReport:
        """Store every event, or none if any is rejected (every rejection is reported)."""
        it = iter(items)
        first = list(islice(it, self.batch_size + 1))
        if len(first) <= self.batch_size:
            # One batch: decided outside the write lock (see the module docstring).
            report = self._new_report()
            if self._commit_optimistically(first, report, whole=True):
                return report
            return self._append_locked(first)
        return self._append_locked(chain(first, it))

    def _append_locked(self, items: Iterable[InputItem]) -> AppendReport:
        """All-or-nothing under the write lock from the start (longer inputs, and
        a batch that lost the race too often or has a row the store refuses)."""
        report = self._new_report()
        # Under the write lock nobody else can write, so state loaded from here on is
        # current; drop what an earlier call cached, which may be stale by now.
        self._forget_written()
        refused = False
        try:
            with self.app.ledger_recorder.write_session() as session:
                for batch in _batches(items, self.batch_size):
                    decision = self._decide(batch, session)
                    report.duplicates += decision.duplicates
                    report.rejected.extend(decision.rejections)
                    # Inserted even after a rejection (rolled back at the end), so
                    # the session can answer for everything decided so far.
                    if not refused and self._insert_or_reject(session, decision, report):
                        self._settle_customers(decision, session)
                        continue
                    refused = True
                    self._pin(decision)
                if not report.ok:
                    raise _Abort
        except _Abort:
            _not_stored(report)
            self._forget_written()
        except BaseException:
            self._forget_written()
            raise
        return report

    # -- skip invalid: each batch commits -----------------------------------------------

    def append_valid(self, items: Iterable[InputItem]) -> AppendReport:
        """Store the valid events, a batch per transaction; report the others."""
        report = self._new_report()
        for batch in _batches(items, self.batch_size):
            self._commit_batch(batch, report)
        return report

    def _commit_batch(self, batch: list[InputItem], report: AppendReport) -> None:
        if not self._commit_optimistically(batch, report, whole=False):
            self._commit_batch_locked(batch, report)

    def _commit_optimistically(
        self, batch: list[InputItem], report: AppendReport, *, whole: bool
    ) -> bool:
        """Decide `batch` outside the write lock, then store it in a transaction
        that holds the lock only to insert; retried when a concurrent writer got
        there first (its commit changed what was decided). `whole`: stored only
        if nothing is rejected. False when the batch must be decided under the
        lock instead: still losing the race, or a row the store refused."""
        mark = report._mark()
        ring = self.app.ledger_mapper.keyring
        attempt = 0
        while attempt < OPTIMISTIC_ATTEMPTS:
            attempt += 1
            with ring.deferring() if ring is not None else nullcontext():
                # Kept states are checked against the store while other writers
                # are about (a lost race says so); a lone writer skips the check.
                # Unless a taken one turned up lately, new ids and subjects are
                # left to the store's unique indexes (a duplicate fails the insert).
                now = time.monotonic()
                contended = attempt > 1 or now < self._contended_until
                trust = not contended and now >= self._verify_until
                decision = self._decide(batch, self._db, contended=contended, trust_indexes=trust)
                if any(
                    r.reason_class == "rule" for r in decision.rejections
                ) and not self._still_current(self._db, decision):
                    # Refused on a customer's state cached by an earlier append
                    # and changed since by another writer: decide again afresh.
                    self._forget_decided(decision)
                    continue
                if whole and decision.rejections:
                    self._forget_decided(decision)  # their states hold events not stored
                    report.duplicates += decision.duplicates
                    report.rejected.extend(decision.rejections)
                    _not_stored(report)
                    return True
                try:
                    if decision.rows:
                        recorder = self.app.ledger_recorder
                        with recorder.write_session(on_known_head=True) as session:
                            if ring is not None:
                                ring.write_deferred(session)
                            self._insert(session, decision, report)
                except IntegrityError:
                    # Another writer got there first, or (unverified) an event id
                    # or subject was taken; forget what we decided and redo, asking.
                    report._undo_to(mark)
                    self._forget_decided(decision)
                    self._contended_until = time.monotonic() + CONTENDED_S
                    if decision.unverified:
                        # A taken id or subject as likely as a race: ask at once.
                        self._verify_until = self._contended_until
                    else:
                        time.sleep(_JITTER.uniform(0, 0.01 * 2**attempt))
                    continue
                except Exception as exc:
                    self._forget_written()
                    if not _is_refusal(exc):
                        raise
                    report._undo_to(mark)
                    return False  # under the lock the refused event is found
            self._settle(decision, report)
            return True
        return False

    def _commit_batch_locked(self, batch: list[InputItem], report: AppendReport) -> None:
        mark = report._mark()
        self._forget_written()
        try:
            with self.app.ledger_recorder.write_session() as session:
                decision = self._decide(batch, session)
                self._insert(session, decision, report)
        except Exception as exc:
            self._forget_written()
            if not _is_refusal(exc):
                raise
            report._undo_to(mark)
            if len(batch) == 1:
                self._reject_refused(batch[0], exc, report)
            else:
                for item in batch:
                    self._commit_batch_locked([item], report)
            return
        self._settle(decision, report)

    # -- shared steps -------------------------------------------------------------------

    def _new_report(self) -> AppendReport:
        return AppendReport(appended_lines=[] if self.track_lines else None)

    def _insert(self, session: WriteSession, decision: Decision, report: AppendReport) -> None:
        if not decision.rows:
            return
        positions = session.insert_rows(decision.rows)
        report.appended += len(positions)
        if report.appended_lines is not None:
            report.appended_lines.extend(item.line for item in decision.items)
        if report.first_position is None:
            report.first_position = positions[0]
        report.last_position = positions[-1]

    def _insert_or_reject(
        self, session: WriteSession, decision: Decision, report: AppendReport
    ) -> bool:
        """All-or-nothing: insert the batch; if the store refuses a row, find it
        (one row at a time) and make it that event's rejection, which rolls
        everything back at the end. False when a row was refused."""
        try:
            with session.savepoint():
                self._insert(session, decision, report)
            return True
        except Exception as exc:
            if not _is_refusal(exc):
                raise
        for row, item in zip(decision.rows, decision.items, strict=True):
            try:
                with session.savepoint():
                    self._insert(session, Decision([row], [item], [], 0, []), report)
            except Exception as exc:
                if not _is_refusal(exc):
                    raise
                self._reject_refused(item, exc, report)
                return False
        return True

    def _settle(self, decision: Decision, report: AppendReport) -> None:
        """After a batch's own commit: count it and snapshot the customers now due."""
        report.duplicates += decision.duplicates
        report.rejected.extend(decision.rejections)
        self._settle_customers(decision, self._db)


def _not_stored(report: AppendReport) -> None:
    """All-or-nothing with a rejection: what the report said was stored was not."""
    report.stored = False
    report.appended = 0
    if report.appended_lines is not None:
        report.appended_lines.clear()
    report.first_position = report.last_position = None


def _is_refusal(exc: BaseException) -> bool:
    """A store error caused by the rows written, not by the connection (nor by a
    store frozen because its tenant moved: every row would be refused alike, and
    the request is to be retried against the new store)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return False
    if isinstance(store_error(exc), StoreMoved):
        return False
    # Here, not at the top: an append to SQLite never loads the PostgreSQL driver
    # (a fifth of `ledger append`'s start), and this runs only on a failure.
    import psycopg

    if isinstance(
        exc, (psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError)
    ):
        return False
    return isinstance(exc, (PersistenceError, psycopg.DatabaseError, sqlite3.DatabaseError))


def _batches(items: Iterable[InputItem], size: int) -> Iterator[list[InputItem]]:
    it = iter(items)
    batch = list(islice(it, size))
    while batch:
        yield batch
        batch = list(islice(it, size))
        if batch:
            # The cyclic collector is paused (see _collector_paused): a batch's own
            # cycles, if any, are young and freed here, so memory stays flat. Not
            # after the last batch: the collector, running again then, frees them,
            # and a one-batch append (a group of one-event POSTs) skips a
            # collection that cost about a tenth of its writer's CPU.
            gc.collect(0)


_paused = 0
_paused_lock = threading.Lock()
_was_enabled = True


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while appending, restored after.

    An import allocates millions of short-lived objects, freed by reference
    counting; the collector would still walk the survivors over and over
    (about a tenth of the append's time). What was alive before is frozen out
    of its walks. Counted, as appenders in several threads share the process."""
    global _paused, _was_enabled
    with _paused_lock:
        _paused += 1
        if _paused == 1:
            _was_enabled = gc.isenabled()
            gc.freeze()
            gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0:
                gc.unfreeze()
                if _was_enabled:
                    gc.enable()
