"""The append service: validate producer events and store them, in batches.

Both the CLI and any API call this. Each event is checked against its contract,
then against the rules given the stored state plus the earlier events of the
same input.

All-or-nothing (the default) runs in one transaction that holds the write lock
from the start: batches are inserted as they are validated; at the first
rejection inserting stops, validation goes on so every rejection is reported,
and the transaction rolls back. With `skip_invalid` each batch commits on its
own; validation runs outside the lock and a concurrent writer's conflict (same
customer stream version, event id or claimed subject) is retried, a few times
optimistically, then under the lock. Under the lock nothing can conflict, so a
row the store still refuses is that event's fault: the batch is retried one
event at a time and the refused event becomes a rejection. All-or-nothing finds
a refused row the same way, under a savepoint, and rejects it.

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
import hashlib
import json
import random
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from types import TracebackType
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
)

from ledger import lookups
from ledger.application import LedgerApplication, first_line, snapshot_due
from ledger.db import Connection, Lookup, Queries, look_up
from ledger.domain import Customer, CustomerEvent, RuleViolation, customer_stream_id
from ledger.entropy import SYSTEM, Entropy
from ledger.events import (
    PAYLOADS,
    ContractError,
    FieldError,
    InboundEvent,
    RecordedEvent,
    parse_inbound_json,
    parse_recorded_json,
)
from ledger.events.customer import CustomerErased
from ledger.input import InputItem
from ledger.keystore import KEY_LOOKUP
from ledger.mapper import subject_of
from ledger.personal import reveal
from ledger.rights import ALLOW_ALL, RightsPolicy
from ledger.stores.base import WriteSession
from ledger.stores.rows import EventRow

DEFAULT_BATCH_SIZE = 1000
# Customer states kept between batches (beyond those of the batch at hand).
DEFAULT_CUSTOMER_CACHE = 10_000
# An evicted customer is snapshotted when reloading it would replay at least
# this many events (or a sixteenth of its stream, so that a big customer's
# snapshots, as big as its state, stay rare): inputs that visit customers at
# random then reload each from a snapshot and a few events.
REPLAY_LIMIT = 50
OPTIMISTIC_ATTEMPTS = 5

# What a producer sent, as opposed to what the ledger added when storing it: two
# events under one event_id are the same event when these agree.
_PRODUCER_FIELDS = {"type", "customer_id", "occurred_at", "actor", "source", "data"}


@dataclass(frozen=True)
class Rejection:
    """One input event not stored, and why: its input line, id and type when known, each
    field with its reason, and the class of the reason (`reason_class`)."""

    line: int
    event_id: str | None
    event_type: str | None
    errors: tuple[FieldError, ...]
    # "contract" (the event's shape), "rule" (the stored state forbids it) or
    # "store" (the database refused the row): the class the rejection metrics count by.
    reason_class: str = "contract"

    def __str__(self) -> str:
        what = "; ".join(str(e) for e in self.errors)
        return (
            f"line {self.line} (event_id {self.event_id or '-'}, "
            f"type {self.event_type or '-'}): {what}"
        )


@dataclass
class AppendReport:
    """What one append did: events appended, duplicates of stored events skipped, the
    rejections, and the positions the appended events took."""

    appended: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    first_position: int | None = None
    last_position: int | None = None
    stored: bool = True  # False when all-or-nothing rolled everything back
    # The input line of each event stored, in position order: kept only when the
    # Appender was asked to (a group of one-event requests, which answers each
    # request with its own outcome); a large import would hold a list as long as
    # its input.
    appended_lines: list[int] | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejected

    def _mark(self) -> tuple[int, int, int, int]:
        lines = len(self.appended_lines) if self.appended_lines is not None else 0
        return self.appended, self.duplicates, len(self.rejected), lines

    def _undo_to(self, mark: tuple[int, int, int, int]) -> None:
        self.appended, self.duplicates = mark[0], mark[1]
        del self.rejected[mark[2] :]
        if self.appended_lines is not None:
            del self.appended_lines[mark[3] :]


class _Abort(Exception):
    """Rolls back an all-or-nothing transaction once rejections are known."""


@dataclass
class _Cached:
    customer: Customer
    snapshot_version: int  # of its latest stored snapshot (0: none)


@dataclass
class _Decision:
    """What one batch comes to: the rows to insert (and the input item of each),
    the customers they change, and what was not stored and why."""

    rows: list[EventRow]
    items: list[InputItem]
    touched: list[Customer]
    duplicates: int
    rejections: list[Rejection]


class Appender:
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
        self.app = app
        self.track_lines = track_lines  # reports say which lines were stored
        self.entropy = entropy
        self.policy = policy
        self.batch_size = batch_size
        self.customer_cache = customer_cache
        self._db = Connection(app.url)
        # Least recently used first; whatever is evicted is in the store.
        self._customers: OrderedDict[str, _Cached] = OrderedDict()
        # Customers whose state holds events the store refused: never evicted.
        self._pinned: dict[str, Customer] = {}
        # Until inserted (then the store answers): event_id -> the event (or,
        # once compared, the digest of the producer's content), and subject ->
        # the customer that created it.
        self._seen: dict[str, InboundEvent | bytes] = {}
        self._claims: dict[str, str] = {}

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
            report.stored = False
            report.appended = 0
            if report.appended_lines is not None:
                report.appended_lines.clear()
            report.first_position = report.last_position = None
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
        mark = report._mark()
        for attempt in range(OPTIMISTIC_ATTEMPTS):
            decision = self._decide(batch, self._db)
            try:
                if decision.rows:
                    with self.app.ledger_recorder.write_session() as session:
                        self._insert(session, decision, report)
            except IntegrityError:
                # Another writer got there first; forget what we believed and redo.
                report._undo_to(mark)
                self._forget_written()
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
                continue
            except Exception as exc:
                self._forget_written()
                if not _is_refusal(exc):
                    raise
                report._undo_to(mark)
                break  # under the lock, below, the refused event is found
            self._settle(decision, report)
            return
        # Still losing the race, or a row refused: decide under the write lock, where
        # nobody else can write, so this attempt cannot conflict.
        self._commit_batch_locked(batch, report)

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

    def _reject_refused(self, item: InputItem, exc: BaseException, report: AppendReport) -> None:
        try:
            event: InboundEvent | None = parse_inbound_json(item.raw)
        except ContractError:
            event = None
        report.rejected.append(
            Rejection(
                item.line,
                str(event.event_id) if event and event.event_id else _peek_event_id(item.raw),
                event.type if event else None,
                (FieldError("(event)", f"the store refused it: {first_line(exc)}"),),
                reason_class="store",
            )
        )

    # -- shared steps -------------------------------------------------------------------

    def _new_report(self) -> AppendReport:
        return AppendReport(appended_lines=[] if self.track_lines else None)

    def _insert(self, session: WriteSession, decision: _Decision, report: AppendReport) -> None:
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
        self, session: WriteSession, decision: _Decision, report: AppendReport
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
                    self._insert(session, _Decision([row], [item], [], 0, []), report)
            except Exception as exc:
                if not _is_refusal(exc):
                    raise
                self._reject_refused(item, exc, report)
                return False
        return True

    def _settle(self, decision: _Decision, report: AppendReport) -> None:
        """After a batch's own commit: count it and snapshot the customers now due."""
        report.duplicates += decision.duplicates
        report.rejected.extend(decision.rejections)
        self._settle_customers(decision, self._db)

    def _settle_customers(self, decision: _Decision, store: Queries) -> None:
        """Once a batch is in `store` (committed, or inserted in the session):
        snapshot the customers now due, through `store` (so a snapshot commits
        or rolls back with the events it summarises), and evict the least
        recently used."""
        for customer in decision.touched:
            previous = customer.version
            customer.collect_events()
            cached = self._customers[customer.customer_id]
            if snapshot_due(previous, customer.version):
                self._snapshot(store, cached)
        self._forget_inserted()
        while len(self._customers) > self.customer_cache:
            _, cached = self._customers.popitem(last=False)
            since = cached.customer.version - cached.snapshot_version
            if since >= max(REPLAY_LIMIT, cached.customer.version // 16):
                self._snapshot(store, cached)

    def _snapshot(self, store: Queries, cached: _Cached) -> None:
        self.app.store_snapshot(store, cached.customer)
        cached.snapshot_version = cached.customer.version

    def _pin(self, decision: _Decision) -> None:
        """Keep in memory the customers of a batch the store did not take whole:
        their state holds events it does not, so they cannot be reloaded. From
        the first refusal on, the transaction is lost anyway; deciding the rest
        as before only serves to report every rejection."""
        for customer in decision.touched:
            customer.collect_events()
            self._customers.pop(customer.customer_id, None)
            self._pinned[customer.customer_id] = customer
        # What is seen from here on stays in memory: keep digests, not events.
        for event_id, seen in self._seen.items():
            if isinstance(seen, InboundEvent):
                self._seen[event_id] = _digest(seen)

    def _forget_inserted(self) -> None:
        """Event ids and claims of inserted rows are found in the store from now on;
        keeping them would make memory grow with the input."""
        self._seen.clear()
        self._claims.clear()

    def _forget_written(self) -> None:
        self._customers.clear()
        self._pinned.clear()
        self._seen.clear()
        self._claims.clear()
        ring = self.app.ledger_mapper.keyring
        if ring is not None:
            ring.forget()  # a rolled-back transaction may have made or destroyed keys

    # -- deciding -----------------------------------------------------------------------

    def _decide(self, batch: list[InputItem], store: Queries) -> _Decision:
        """What `batch` comes to, given what `store` holds (a write session sees its
        own inserts) and the events of this input not inserted yet."""
        parsed = [(item, _parse(item)) for item in batch]
        events = [p for _, p in parsed if isinstance(p, InboundEvent)]
        keyring = self.app.ledger_mapper.keyring
        # Each given id as text once (UUID formatting is Python code).
        given_ids = {id(e): str(e.event_id) for e in events if e.event_id}
        question = keyring.ask(e.customer_id for e in events) if keyring else None
        missing = self._uncached(dict.fromkeys(e.customer_id for e in events))
        subjects = [
            s
            for e in events
            if PAYLOADS[e.type].creates_subject
            and (s := subject_of(e.type, e.data)) is not None
            and s not in self._claims
        ]
        streams = {c: customer_stream_id(c) for c in missing}
        # Everything this batch needs from the store, in one statement (on
        # PostgreSQL each is a round trip, and a group of one-event appends is a
        # batch): keys (when they live in the ledger's database), stored events
        # under the given ids, owners of the subjects created, and which of the
        # customers not cached have events.
        asked: list[tuple[Lookup, Sequence[Any]]] = [
            (lookups.EVENT_STATES, list(given_ids.values())),
            (lookups.SUBJECT_OWNERS, subjects),
            (lookups.STREAMS, lookups.stream_keys(store.kind, list(streams.values()))),
        ]
        if question is not None and keyring is not None and keyring.shared:
            asked.append((KEY_LOOKUP, question.missing))
        found = look_up(store, asked)
        # Keys are made in this transaction, so a customer whose first event rolls
        # back keeps no key; a key destroyed without its customer.erased stored
        # (a crash between) still refuses further events. First: the stored
        # duplicates below are revealed with them.
        shredded = (
            keyring.answer(
                store, question, found[3] if len(found) > 3 else None, self.entropy.random_bytes
            )
            if keyring is not None and question is not None
            else set()
        )
        stored = self._stored_digests(lookups.states(found[0]))
        self._claims.update(lookups.owners(found[1]))
        self._load_customers(store, streams, lookups.streams(found[2]))
        now = self.entropy.now()
        out: list[CustomerEvent] = []
        touched: dict[str, Customer] = {}
        decision = _Decision([], [], [], 0, [])
        for item, result in parsed:
            if isinstance(result, Rejection):
                decision.rejections.append(result)
                continue
            event = result
            given_id = given_ids.get(id(event))
            try:
                if given_id is not None and self._is_duplicate(event, given_id, stored):
                    decision.duplicates += 1
                    continue
                customer = self._customer(event.customer_id)
                if customer.erased and isinstance(event.data, CustomerErased):
                    decision.duplicates += 1  # a repeated erasure is a no-op
                    continue
                if event.customer_id in shredded and not isinstance(event.data, CustomerErased):
                    raise RuleViolation("customer_id", "customer is erased")
                subject = self._check_claim(event)
                customer.check(event, self.policy)
            except RuleViolation as rule:
                decision.rejections.append(
                    Rejection(
                        item.line,
                        given_id,
                        event.type,
                        (FieldError(rule.field, rule.reason),),
                        reason_class="rule",
                    )
                )
                continue
            event_id = given_id or self.entropy.new_event_id()
            out.append(customer.record(event, event_id, now))
            decision.items.append(item)
            touched[event.customer_id] = customer
            if given_id is not None:  # a generated id cannot come again
                # Digested only if the id comes again (rare): see _is_duplicate.
                self._seen[given_id] = event
            if subject is not None:
                self._claims[subject] = event.customer_id
        mapper = self.app.ledger_mapper
        random_bytes = self.entropy.random_bytes
        decision.rows = [mapper.event_row(e, random_bytes) for e in out]
        if keyring is not None:
            # The key goes in the transaction that stores customer.erased.
            for e in out:
                if isinstance(e.envelope.data, CustomerErased):
                    keyring.destroy(store, e.envelope.customer_id)
        decision.touched = list(touched.values())
        return decision

    def _is_duplicate(self, event: InboundEvent, event_id: str, stored: dict[str, bytes]) -> bool:
        """True for a repeat of an event already stored or earlier in this input;
        a different event under the same id is a conflict (RuleViolation)."""
        known = self._seen.get(event_id, stored.get(event_id))
        if known is None:
            return False
        if isinstance(known, InboundEvent):
            known = self._seen[event_id] = _digest(known)
        if known == _digest(event):
            return True
        where = "stored" if event_id in stored else "earlier in this input"
        raise RuleViolation("event_id", f"a different event with this event_id is already {where}")

    def _stored_digests(self, states: dict[str, bytes]) -> dict[str, bytes]:
        ring = self.app.ledger_mapper.keyring
        if ring is not None:
            states = {eid: reveal(state, ring) for eid, state in states.items()}
        return {eid: _stored_digest(state) for eid, state in states.items()}

    def _check_claim(self, event: InboundEvent) -> str | None:
        """The subject this event creates, if any, after checking it is free."""
        payload = PAYLOADS[event.type]
        if not payload.creates_subject:
            return None
        subject = subject_of(event.type, event.data)
        assert subject is not None
        owner = self._claims.get(subject)
        if owner is not None and owner != event.customer_id:
            raise RuleViolation(
                f"data.{payload.subject_field}",
                f"{payload.subject_kind} {event.data.subject_id()!r} already exists "
                "for another customer",
            )
        return subject

    def _customer(self, customer_id: str) -> Customer:
        return self._pinned.get(customer_id) or self._customers[customer_id].customer

    def _uncached(self, customer_ids: Iterable[str]) -> list[str]:
        """Those of `customer_ids` whose state is not in memory (the others are
        marked as recently used)."""
        missing: list[str] = []
        for customer_id in customer_ids:
            if customer_id in self._pinned:
                continue
            if customer_id in self._customers:
                self._customers.move_to_end(customer_id)
            else:
                missing.append(customer_id)
        return missing

    def _load_customers(
        self, store: Queries, streams: dict[str, UUID], existing: set[UUID]
    ) -> None:
        """Load the customers of `streams` (customer -> stream), of which those in
        `existing` have stored events: a new one (usually most) needs no loading."""
        for customer_id, stream_id in streams.items():
            if stream_id in existing:
                self._customers[customer_id] = _Cached(*self.app.load_customer(store, customer_id))
            else:
                self._customers[customer_id] = _Cached(
                    Customer(id=stream_id, customer_id=customer_id), 0
                )


def _digest(event: InboundEvent | RecordedEvent) -> bytes:
    """The producer's content of an event, as a short digest (compared, never stored)."""
    content = event.model_dump_json(include=_PRODUCER_FIELDS).encode()
    return hashlib.blake2b(content, digest_size=16).digest()


def _stored_digest(state: bytes) -> bytes:
    try:
        return _digest(parse_recorded_json(state))
    except ContractError:
        # Stored under an older contract: not the same as anything sent today.
        return b""


def _is_refusal(exc: BaseException) -> bool:
    """A store error caused by the rows written, not by the connection."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return False
    if isinstance(
        exc, (psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError)
    ):
        return False
    return isinstance(exc, (PersistenceError, psycopg.DatabaseError, sqlite3.DatabaseError))


def _parse(item: InputItem) -> InboundEvent | Rejection:
    try:
        return parse_inbound_json(item.raw)
    except ContractError as exc:
        return Rejection(item.line, _peek_event_id(item.raw), exc.event_type, tuple(exc.errors))


def _peek_event_id(raw: str) -> str | None:
    try:
        obj: Any = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    value = obj.get("event_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


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
