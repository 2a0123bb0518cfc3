"""Deciding a batch of input: what it comes to given the stored state and the
earlier events of the same input (`Decision`), and the customers' states, event
ids and claimed subjects kept between batches in bounded memory (`Decider`, the
base of `ledger.appending.appender.Appender`, whose module docstring says how).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from ledger import lookups
from ledger.appending.report import AppendReport, Rejection
from ledger.application import LedgerApplication, first_line, snapshot_due
from ledger.db import Lookup, Queries, look_up
from ledger.domain import (
    AcceptedEvent,
    Customer,
    RuleViolation,
    customer_stream_id,
    subject_ref,
)
from ledger.entropy import Entropy
from ledger.events import (
    PAYLOADS,
    ContractError,
    FieldError,
    InboundEvent,
    RecordedEvent,
    parse_inbound_json,
    parse_recorded_json,
)
from ledger.events.customer import (
    CustomerAbsorbed,
    CustomerErased,
    CustomerMerged,
    CustomerNotDuplicate,
)
from ledger.input import InputItem
from ledger.keystore.table import KEY_LOOKUP
from ledger.mapper import subject_of
from ledger.personal import reveal
from ledger.reading import stream_versions
from ledger.rights import RightsPolicy
from ledger.stores.rows import EventRow

# Customer states kept between batches (beyond those of the batch at hand).
DEFAULT_CUSTOMER_CACHE = 10_000
# An evicted customer is snapshotted when reloading it would replay at least
# this many events (or a sixteenth of its stream, so that a big customer's
# snapshots, as big as its state, stay rare): inputs that visit customers at
# random then reload each from a snapshot and a few events.
REPLAY_LIMIT = 50

# What a producer sent, as opposed to what the ledger added when storing it: two
# events under one event_id are the same event when these agree.
_PRODUCER_FIELDS = {"type", "customer_id", "occurred_at", "actor", "source", "data"}


@dataclass
class _Cached:
    customer: Customer
    snapshot_version: int  # of its latest stored snapshot (0: none)


@dataclass
class Decision:
    """What one batch comes to: the rows to insert (and the input item of each),
    the customers they change, and what was not stored and why."""

    rows: list[EventRow]
    items: list[InputItem]
    touched: list[Customer]
    duplicates: int
    rejections: list[Rejection]
    # The version of each customer whose state came from the cache, as it stood
    # before this batch: what a concurrent writer may have changed since.
    cached_versions: dict[str, int] = field(default_factory=dict)
    # Deciding `contended`: each changed customer's state before this batch.
    before: dict[str, Customer] = field(default_factory=dict)
    # Decided without asking the store for its event ids and claimed subjects
    # (`trust_indexes`): a failed insert may only mean that one was taken.
    unverified: bool = False


class Decider:
    """Decides batches of input (`_decide`) and keeps what deciding needs between
    them: the most recently used customers' states, and the event ids and subjects
    of this input not inserted yet. The appender settles, pins and forgets them as
    its transactions commit or roll back."""

    def __init__(
        self,
        app: LedgerApplication,
        policy: RightsPolicy,
        customer_cache: int,
        entropy: Entropy,
    ) -> None:
        self.app = app
        self.entropy = entropy
        self.policy = policy
        self.customer_cache = customer_cache
        # Least recently used first; whatever is evicted is in the store.
        self._customers: OrderedDict[str, _Cached] = OrderedDict()
        # Customers whose state holds events the store refused: never evicted.
        self._pinned: dict[str, Customer] = {}
        # Until inserted (then the store answers): event_id -> the event (or,
        # once compared, the digest of the producer's content), and subject ->
        # the customer that created it.
        self._seen: dict[str, InboundEvent | bytes] = {}
        self._claims: dict[str, str] = {}

    # -- between batches: what is kept, settled, pinned and forgotten -----------------

    def _settle_customers(self, decision: Decision, store: Queries) -> None:
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

    def _pin(self, decision: Decision) -> None:
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

    def _forget_decided(self, decision: Decision) -> None:
        """After a decision that was not stored (a concurrent writer won, or a
        rejection voids it): the states it changed go back to what they were
        before it (a `contended` one kept them; else they are dropped, to be
        loaded again), and the ids, claims and new keys it made are forgotten."""
        for customer in decision.touched:
            before = decision.before.get(customer.customer_id)
            cached = self._customers.get(customer.customer_id)
            if before is not None and cached is not None and cached.customer is customer:
                cached.customer = before
            else:
                self._customers.pop(customer.customer_id, None)
        self._seen.clear()
        self._claims.clear()
        ring = self.app.ledger_mapper.keyring
        if ring is not None:
            ring.release()  # this thread's keys, some made for this decision only

    def _forget_written(self) -> None:
        self._customers.clear()
        self._pinned.clear()
        self._seen.clear()
        self._claims.clear()
        ring = self.app.ledger_mapper.keyring
        if ring is not None:
            ring.forget()  # a rolled-back transaction may have made or destroyed keys

    # -- deciding -----------------------------------------------------------------------

    def _decide(
        self,
        batch: list[InputItem],
        store: Queries,
        *,
        contended: bool = False,
        trust_indexes: bool = False,
    ) -> Decision:
        """What `batch` comes to, given what `store` holds (a write session sees its
        own inserts) and the events of this input not inserted yet. `contended`
        (other writers are about): bring cached states up to the stored ones
        first (`_catch_up`), and keep each changed customer's state as it was
        before, for `_forget_decided` to put back if the decision loses the race
        to insert. `trust_indexes`: when the store need not be asked anything
        else (every customer's state and key at hand), do not ask it for the
        given event ids and created subjects either, and leave a stored one to
        its unique index, which then fails the insert (`Decision.unverified`):
        a statement less for the usual batch, whose ids and subjects are new."""
        parsed = [(item, _parse(item)) for item in batch]
        events: list[InboundEvent] = []
        # Each given id as text once (UUID formatting is Python code), and the
        # subject each event creates, once: looked up below, then claimed.
        given_ids: dict[int, str] = {}
        created: dict[int, str] = {}
        # Marks and merges are checked against the other customers' states too.
        named: list[str] = []
        for _, event in parsed:
            if isinstance(event, Rejection):
                continue
            events.append(event)
            if event.event_id:
                given_ids[id(event)] = str(event.event_id)
            if event.data.creates_subject:
                created[id(event)] = _created_subject(event)
            named += _others(event)
        customer_ids = [e.customer_id for e in events]
        keyring = self.app.ledger_mapper.keyring
        question = keyring.ask(customer_ids) if keyring else None
        wanted = dict.fromkeys([*customer_ids, *named])
        missing = self._uncached(wanted)
        subjects = [s for s in created.values() if s not in self._claims]
        streams = {c: customer_stream_id(c) for c in missing}
        # Cached states are checked against the stored versions when asked: another
        # writer (the server's other appenders, the group writer, another process)
        # may have appended since, and deciding on a stale state would lose the
        # race to insert (a wide batch nearly always did, under a mixed load).
        kept = (
            [self._customers[c].customer for c in wanted if c in self._customers]
            if contended
            else []
        )
        # Everything this batch needs from the store, in one statement (on
        # PostgreSQL each is a round trip, and a group of one-event appends is a
        # batch): keys (when they live in the ledger's database), stored events
        # under the given ids, owners of the subjects created, and the stored
        # versions of the customers not cached (which of them have events) and
        # of the cached ones to check.
        unverified = (
            trust_indexes
            and not streams
            and not kept
            and (question is None or not question.missing)
        )
        asked: list[tuple[Lookup, Sequence[Any]]] = [
            (lookups.EVENT_STATES, [] if unverified else list(given_ids.values())),
            (lookups.SUBJECT_OWNERS, [] if unverified else subjects),
            (
                lookups.STREAM_VERSIONS,
                lookups.stream_keys(store.kind, [*streams.values(), *(c.id for c in kept)]),
            ),
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
        versions = lookups.versions(found[2])
        self._load_customers(store, streams, versions)
        self._catch_up(store, kept, versions)
        # `streams` has the missing customers as keys (a set, where `missing` is a list).
        cached_versions = {c: self._customer(c).version for c in wanted if c not in streams}
        self._load_groups(store, customer_ids)
        now = self.entropy.now()
        out: list[AcceptedEvent] = []
        touched: dict[str, Customer] = {}
        decision = Decision([], [], [], 0, [], cached_versions, unverified=unverified)
        before = decision.before if contended else None
        # Looked up once, not per event.
        customer_of, seen, claims, policy = self._customer, self._seen, self._claims, self.policy
        accepted_items = decision.items
        for item, result in parsed:
            if isinstance(result, Rejection):
                decision.rejections.append(result)
                continue
            event = result
            given_id = given_ids.get(id(event))
            try:
                event = self._to_owner(event)
                if given_id is not None and self._is_duplicate(event, given_id, stored):
                    decision.duplicates += 1
                    continue
                customer = customer_of(event.customer_id)
                if customer.erased and isinstance(event.data, CustomerErased):
                    decision.duplicates += 1  # a repeated erasure is a no-op
                    continue
                if event.customer_id in shredded and not isinstance(event.data, CustomerErased):
                    raise RuleViolation("customer_id", "customer is erased", "customer_erased")
                subject = created.get(id(result))
                if subject is not None:
                    self._check_claim(event, subject)
                names = _others(event)
                others = {o: customer_of(o) for o in names} if names else None
                customer.check(event, policy, others)
            except RuleViolation as rule:
                decision.rejections.append(
                    Rejection(
                        item.line,
                        given_id,
                        event.type,
                        (FieldError(rule.field, rule.reason, rule.code),),
                        reason_class="rule",
                    )
                )
                continue
            event_id = given_id or self.entropy.new_event_id()
            if before is not None and event.customer_id not in touched:
                before[event.customer_id] = customer.clone()
            out.append(customer.record(event, event_id, now))
            accepted_items.append(item)
            touched[event.customer_id] = customer
            if given_id is not None:  # a generated id cannot come again
                # Digested only if the id comes again (rare): see _is_duplicate.
                seen[given_id] = event
            if subject is not None:
                claims[subject] = event.customer_id
        mapper = self.app.ledger_mapper
        random_bytes = self.entropy.random_bytes
        decision.rows = [mapper.event_row(e, random_bytes) for e in out]
        if keyring is not None:
            # The key goes in the transaction that stores customer.erased.
            for e in out:
                if type(e.envelope.data) is CustomerErased:  # cheaper than isinstance
                    keyring.destroy(store, e.envelope.customer_id)
        decision.touched = list(touched.values())
        return decision

    def _catch_up(self, store: Queries, kept: list[Customer], stored: dict[UUID, int]) -> None:
        """Bring the cached states of `kept` to their `stored` versions: those
        behind apply the events since. One ahead of the store would hold events
        never stored (it cannot be, as a lost decision puts back or drops the
        states it changed); such a state is loaded again all the same."""
        behind: list[Customer] = []
        ahead: dict[str, UUID] = {}
        for customer in kept:
            version = stored.get(customer.id, 0)
            if version > customer.version:
                behind.append(customer)
            elif version < customer.version:
                del self._customers[customer.customer_id]
                ahead[customer.customer_id] = customer.id
        if ahead:
            self._load_customers(store, ahead, stored)
        if behind:
            self.app.catch_up_customers(store, behind, stored)

    def _still_current(self, store: Queries, decision: Decision) -> bool:
        """Whether the customers' states `decision` took from the cache are still
        the stored ones (no other writer appended to them since)."""
        versions = decision.cached_versions
        if not versions:
            return True
        streams = {customer_stream_id(c): c for c in versions}
        stored = stream_versions(store, list(streams))
        return all(stored.get(s, 0) == versions[c] for s, c in streams.items())

    def _to_owner(self, event: InboundEvent) -> InboundEvent:
        """Rules see merged customers as one: an event about a task, order, email,
        dialogue, visit or sms that another customer of the same merge created is
        stored on that customer's stream (its owner), so an undo leaves the action
        with its subject. Any other event keeps the customer it was sent under."""
        ref = subject_ref(event.data)
        if ref is None:
            return event
        customer = self._customer(event.customer_id)
        if not customer.merged or customer.has_subject(*ref):
            return event
        for member in self._group(customer):
            if member.has_subject(*ref):
                return event.model_copy(update={"customer_id": member.customer_id})
        return event

    def _group(self, customer: Customer) -> list[Customer]:
        """The customers of `customer`'s standing merge, the priority first."""
        root = customer if customer.merged_into is None else self._customer(customer.merged_into)
        return [root, *(self._customer(a) for a in sorted(root.absorbed))]

    def _load_groups(self, store: Queries, customer_ids: list[str]) -> None:
        """Load the other customers of each given customer's merge (a priority, then
        the customers it absorbed): two rounds at most, and none for a batch whose
        customers are merged with no one."""
        wanted = list(dict.fromkeys(customer_ids))
        for _ in range(2):
            more: list[str] = []
            for customer_id in wanted:
                customer = self._customer(customer_id)
                if customer.merged_into is not None:
                    more.append(customer.merged_into)
                more.extend(customer.absorbed)
            missing = self._uncached(dict.fromkeys(more))
            if missing:
                streams = {c: customer_stream_id(c) for c in missing}
                stored = stream_versions(store, list(streams.values()))
                self._load_customers(store, streams, stored)
            wanted = more
            if not wanted:
                break

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
        raise RuleViolation(
            "event_id",
            f"a different event with this event_id is already {where}",
            "event_id_taken",
        )

    def _stored_digests(self, states: dict[str, bytes]) -> dict[str, bytes]:
        ring = self.app.ledger_mapper.keyring
        if ring is not None:
            states = {eid: reveal(state, ring) for eid, state in states.items()}
        return {eid: _stored_digest(state) for eid, state in states.items()}

    def _check_claim(self, event: InboundEvent, subject: str) -> None:
        """Check that `subject`, which `event` creates, is free."""
        owner = self._claims.get(subject)
        if owner is not None and owner != event.customer_id:
            payload = PAYLOADS[event.type]
            raise RuleViolation(
                f"data.{payload.subject_field}",
                f"{payload.subject_kind} {event.data.subject_id()!r} already exists "
                "for another customer",
                f"{payload.subject_kind}_exists",
            )

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
        self, store: Queries, streams: dict[str, UUID], versions: Mapping[UUID, int]
    ) -> None:
        """Load the customers of `streams` (customer -> stream), of which those in
        `versions` have stored events, up to the version given: a new one (usually
        most) needs no loading."""
        stored = [c for c, stream_id in streams.items() if stream_id in versions]
        loaded = self.app.load_customers(store, stored, versions) if stored else {}
        for customer_id, stream_id in streams.items():
            found = loaded.get(customer_id)
            self._customers[customer_id] = (
                _Cached(*found)
                if found
                else _Cached(Customer(id=stream_id, customer_id=customer_id), 0)
            )

    # -- a row the store refused ------------------------------------------------------

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


def _created_subject(event: InboundEvent) -> str:
    """The subject `event`, of a type that creates one, brings into existence
    (claimed for its customer)."""
    subject = subject_of(event.type, event.data)
    assert subject is not None
    return subject


# The types whose rules read other customers' states (see _others): tested by
# type, as an isinstance that fails against pydantic classes costs more.
_NAMING = frozenset({CustomerNotDuplicate, CustomerMerged, CustomerAbsorbed})


def _others(event: InboundEvent) -> list[str]:
    """The customers besides its own whose state an event's rules read."""
    data = event.data
    if type(data) not in _NAMING:
        return []
    if isinstance(data, CustomerNotDuplicate):
        return [data.other_customer_id]
    if isinstance(data, CustomerMerged):
        return list(data.absorbed)
    if isinstance(data, CustomerAbsorbed):
        return [data.into]
    return []


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
