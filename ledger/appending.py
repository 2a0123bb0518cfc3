"""The append service: validate producer events and store them, in batches.

Both the CLI and (later) any API call this. Each event is checked against its
contract, then against the rules given the stored state plus the earlier events
of the same input.

All-or-nothing (the default) runs in one transaction that holds the write lock
from the start: batches are inserted as they are validated; at the first
rejection inserting stops, validation goes on so every rejection is reported,
and the transaction rolls back. With `skip_invalid` each batch commits on its
own; validation runs outside the lock and a concurrent writer's conflict (same
customer stream version, event id or claimed subject) is retried, a few times
optimistically, then under the lock.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.domain import Customer, CustomerEvent, RuleViolation
from ledger.events import (
    PAYLOADS,
    ContractError,
    FieldError,
    InboundEvent,
    parse_inbound_json,
)
from ledger.input import InputItem
from ledger.mapper import subject_of
from ledger.rights import ALLOW_ALL, RightsPolicy
from ledger.stores.base import WriteSession
from ledger.stores.rows import EVENTS_TABLE

DEFAULT_BATCH_SIZE = 1000
OPTIMISTIC_ATTEMPTS = 5


@dataclass(frozen=True)
class Rejection:
    line: int
    event_id: str | None
    event_type: str | None
    errors: tuple[FieldError, ...]
    # "contract" (the event's shape) or "rule" (the stored state forbids it): the
    # class the rejection metrics count by.
    reason_class: str = "contract"

    def __str__(self) -> str:
        what = "; ".join(str(e) for e in self.errors)
        return (
            f"line {self.line} (event_id {self.event_id or '-'}, "
            f"type {self.event_type or '-'}): {what}"
        )


@dataclass
class AppendReport:
    appended: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    first_position: int | None = None
    last_position: int | None = None
    stored: bool = True  # False when all-or-nothing rolled everything back

    @property
    def ok(self) -> bool:
        return not self.rejected


class _Abort(Exception):
    """Rolls back an all-or-nothing transaction once rejections are known."""


@dataclass
class _Decided:
    stored_events: list[StoredEvent]
    touched: list[Customer]
    duplicates: int
    rejections: list[Rejection]


class Appender:
    def __init__(
        self,
        app: LedgerApplication,
        policy: RightsPolicy = ALLOW_ALL,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.app = app
        self.policy = policy
        self.batch_size = batch_size
        self._db = Connection(app.url)
        self._customers: dict[str, Customer] = {}
        self._seen_event_ids: set[str] = set()
        self._claims: dict[str, str] = {}
        # customer_id -> version before this all-or-nothing transaction
        self._snapshot_after_commit: dict[str, int] = {}

    def close(self) -> None:
        self._db.close()

    def append(self, items: Iterable[InputItem], *, skip_invalid: bool = False) -> AppendReport:
        report = AppendReport()
        batches = _batches(items, self.batch_size)
        if skip_invalid:
            for batch in batches:
                self._append_committing(batch, report)
            return report
        # Under the write lock nobody else can write, so state loaded from here on is
        # current; drop what an earlier call cached, which may be stale by now.
        self._forget_written()
        try:
            with self.app.ledger_recorder.write_session() as session:
                for batch in batches:
                    self._append_batch(batch, report, session if report.ok else None)
                if not report.ok:
                    raise _Abort
            self._take_due_snapshots()
        except _Abort:
            report.stored = False
            report.appended = 0
            report.first_position = report.last_position = None
            self._forget_written()
        except BaseException:
            self._forget_written()
            raise
        return report

    def _append_committing(self, batch: list[InputItem], report: AppendReport) -> None:
        before = (report.appended, report.duplicates, len(report.rejected))
        for attempt in range(OPTIMISTIC_ATTEMPTS):
            try:
                self._append_batch(batch, report, None, commit=True)
                return
            except IntegrityError:
                # Another writer got there first; forget what we believed and redo.
                self._undo(report, before)
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
        # Still losing the race: decide under the write lock, where nobody else
        # can write, so this attempt cannot conflict.
        with self.app.ledger_recorder.write_session() as session:
            self._forget_written()
            self._append_batch(batch, report, session)
        self._take_due_snapshots()

    def _undo(self, report: AppendReport, before: tuple[int, int, int]) -> None:
        report.appended, report.duplicates = before[0], before[1]
        del report.rejected[before[2] :]
        self._forget_written()

    def _take_due_snapshots(self) -> None:
        # Snapshots are a cache outside the events' transaction: taken only once
        # the events they summarise are committed.
        for customer_id, previous in self._snapshot_after_commit.items():
            self.app.snapshot_if_due(self._customers[customer_id], previous)
        self._snapshot_after_commit.clear()

    def _append_batch(
        self,
        batch: list[InputItem],
        report: AppendReport,
        session: WriteSession | None,
        *,
        commit: bool = False,
    ) -> None:
        decided = self._decide(batch)
        report.duplicates += decided.duplicates
        report.rejected.extend(decided.rejections)
        if decided.stored_events and (session is not None or commit):
            scope: AbstractContextManager[WriteSession] = (
                self.app.ledger_recorder.write_session() if commit else nullcontext(session)  # type: ignore[arg-type]
            )
            with scope as s:
                positions = s.insert(decided.stored_events)
            for customer in decided.touched:
                previous = customer.version
                customer.collect_events()
                if commit:
                    self.app.snapshot_if_due(customer, previous)
                else:
                    self._snapshot_after_commit.setdefault(customer.customer_id, previous)
            report.appended += len(positions)
            if report.first_position is None:
                report.first_position = positions[0]
            report.last_position = positions[-1]
        else:
            for customer in decided.touched:
                customer.collect_events()

    def _forget_written(self) -> None:
        self._snapshot_after_commit.clear()
        self._customers.clear()
        self._seen_event_ids.clear()
        self._claims.clear()

    def _decide(self, batch: list[InputItem]) -> _Decided:
        parsed: list[tuple[InputItem, InboundEvent | Rejection]] = [
            (item, _parse(item)) for item in batch
        ]
        events = [p for _, p in parsed if isinstance(p, InboundEvent)]
        stored_dups = self._stored_event_ids([str(e.event_id) for e in events if e.event_id])
        self._load_claims(events)
        self._load_customers({e.customer_id for e in events})
        now = datetime.now(UTC)
        out: list[CustomerEvent] = []
        touched: dict[str, Customer] = {}
        duplicates = 0
        rejections: list[Rejection] = []
        for item, result in parsed:
            if isinstance(result, Rejection):
                rejections.append(result)
                continue
            event = result
            event_id = str(event.event_id) if event.event_id else str(uuid.uuid4())
            if event_id in stored_dups or event_id in self._seen_event_ids:
                duplicates += 1
                continue
            customer = self._customers[event.customer_id]
            try:
                self._check_claim(event)
                customer.check(event, self.policy)
            except RuleViolation as rule:
                given_id = str(event.event_id) if event.event_id else None
                rejections.append(
                    Rejection(
                        item.line,
                        given_id,
                        event.type,
                        (FieldError(rule.field, rule.reason),),
                        reason_class="rule",
                    )
                )
                continue
            out.append(customer.record(event, event_id, now))
            touched[event.customer_id] = customer
            self._seen_event_ids.add(event_id)
            if PAYLOADS[event.type].creates_subject:
                subject = subject_of(event.type, event.data)
                assert subject is not None
                self._claims[subject] = event.customer_id
        mapper = self.app.mapper
        return _Decided(
            stored_events=[mapper.to_stored_event(e) for e in out],
            touched=list(touched.values()),
            duplicates=duplicates,
            rejections=rejections,
        )

    def _check_claim(self, event: InboundEvent) -> None:
        payload = PAYLOADS[event.type]
        if not payload.creates_subject:
            return
        subject = f"{payload.subject_kind}:{event.data.subject_id()}"
        owner = self._claims.get(subject)
        if owner is not None and owner != event.customer_id:
            raise RuleViolation(
                f"data.{payload.subject_field}",
                f"{payload.subject_kind} {event.data.subject_id()!r} already exists "
                "for another customer",
            )

    def _stored_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(event_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.fetchall(
                f"SELECT event_id FROM {EVENTS_TABLE} WHERE event_id IN ({marks})", chunk
            )
            found.update(r[0] for r in rows)
        return found

    def _load_claims(self, events: Sequence[InboundEvent]) -> None:
        subjects = []
        for e in events:
            payload = PAYLOADS[e.type]
            if payload.creates_subject:
                subject = f"{payload.subject_kind}:{e.data.subject_id()}"
                if subject not in self._claims:
                    subjects.append(subject)
        for chunk in _chunks(subjects, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.fetchall(
                f"SELECT subject, customer_id FROM {EVENTS_TABLE} "
                f"WHERE creates_subject = ? AND subject IN ({marks})",
                [True, *chunk],
            )
            self._claims.update((r[0], r[1]) for r in rows)

    def _load_customers(self, customer_ids: Iterable[str]) -> None:
        for customer_id in customer_ids:
            if customer_id not in self._customers:
                self._customers[customer_id] = self.app.customer(customer_id)


def _parse(item: InputItem) -> InboundEvent | Rejection:
    try:
        return parse_inbound_json(item.raw)
    except ContractError as exc:
        return Rejection(item.line, _peek_event_id(item.raw), exc.event_type, tuple(exc.errors))


def _peek_event_id(raw: str) -> str | None:
    try:
        obj: Any = json.loads(raw)
    except ValueError:
        return None
    value = obj.get("event_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _batches(items: Iterable[InputItem], size: int) -> Iterator[list[InputItem]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
