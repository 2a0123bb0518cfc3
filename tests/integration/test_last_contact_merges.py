"""Merged customers downstream: the relay publishes the four merge events keyed by
the customer each belongs to, and the `last_contact` example folds ids (the latest
contact of a priority customer is over itself and the customers merged into it),
whatever order the two partitions deliver in, and unfolds after an undo."""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka.partitioner.default import murmur2

from consumers.last_contact import LastContact, last_contact_of, members, merged_into
from consumers.seen_store import PostgresSeenStore
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.events import RecordedEvent, parse_recorded_json
from ledger.reading import iter_rows
from ledger.rights import ALLOW_ALL
from relay.config import DEFAULT_PARTITIONS
from services.bootstrap import prepare_store
from services.merging import MergeRequest, UnmergeRequest, merge_customers, unmerge_customers
from tests.factories import append_ok, event
from tests.integration.test_subscriber import (
    EXPECTED,
    contact_history,
    relay_all,
    running,
    subscriber,
    wait_for,
    without_event_id,
)
from tests.relay_support import topic_reader

if TYPE_CHECKING:
    from tests.kafka_broker import TansuBroker

MERGE_TYPES = ("customer.merged", "customer.absorbed", "customer.unmerged", "customer.released")

# Bob's contacts after the merge, sent under his own id, and Ann's after the undo.
BOB_SMS = event("sms.sent", "bob", {"message_id": "s9"}, occurred_at="2026-10-05T12:00:00+00:00")
ANN_EMAIL = event(
    "email.sent", "ann", {"message_id": "m9", "subject": "again"},
    occurred_at="2026-10-06T09:00:00+00:00",
)  # fmt: skip

# While bob stands merged into ann: the latest per channel over both.
FOLDED = {
    "call": "2026-10-02T08:00:00+00:00",  # bob's
    "email": "2026-10-03T09:00:00+00:00",
    "sms": "2026-10-05T12:00:00+00:00",  # bob's, sent after the merge
    "chat": "2026-10-04T08:00:00+00:00",  # bob's
    "last_contact_at": "2026-10-05T12:00:00+00:00",
    "channel": "sms",
}
# After the undo each is its own again (bob's later SMS stays his).
BOB_OWN = {
    **EXPECTED["bob"],
    "sms": "2026-10-05T12:00:00+00:00",
    "last_contact_at": "2026-10-05T12:00:00+00:00",
    "channel": "sms",
}
ANN_AFTER_UNDO = {
    **EXPECTED["ann"],
    "email": "2026-10-06T09:00:00+00:00",
    "last_contact_at": "2026-10-06T09:00:00+00:00",
}


def merge(app: LedgerApplication, into: str = "ann") -> None:
    with Connection(app.url) as conn:
        prepare_store(conn)
        request = MergeRequest(into, ("bob",), "u-1", "one person", confirm=True)
        assert merge_customers(app, conn, ALLOW_ALL, request).applied


def unmerge(app: LedgerApplication) -> None:
    with Connection(app.url) as conn:
        prepare_store(conn)
        unmerge_customers(app, conn, ALLOW_ALL, UnmergeRequest("ann", "bob", "u-1", "two people"))


def stored_events(url: str) -> list[RecordedEvent]:
    with Connection(parse_database_url(url)) as conn:
        return [row.decode() for row in iter_rows(conn)]


def answers(conn: Connection) -> dict[str, Any]:
    return {c: without_event_id(last_contact_of(conn, c)) for c in ("ann", "bob")}


def own(conn: Connection) -> dict[str, Any]:
    return {c: without_event_id(last_contact_of(conn, c, fold=False)) for c in ("ann", "bob")}


def deliveries(events: list[RecordedEvent], rng: random.Random) -> list[RecordedEvent]:
    """One arrival order two partitions (keyed by customer) can give: each
    customer's events in order, the two customers interleaved at random."""
    queues: dict[str, list[RecordedEvent]] = defaultdict(list)
    for e in events:
        queues[e.customer_id].append(e)
    order: list[RecordedEvent] = []
    while any(queues.values()):
        customer = rng.choice(sorted(c for c, q in queues.items() if q))
        order.append(queues[customer].pop(0))
    return order


def each_customer_first(events: list[RecordedEvent]) -> list[list[RecordedEvent]]:
    """The extreme orders: one partition entirely before the next, every way."""
    customers = sorted({e.customer_id for e in events})
    return [
        [e for c in order for e in events if e.customer_id == c]
        for order in itertools.permutations(customers)
    ]


def fresh(conn: Connection) -> LastContact:
    conn.execute("DROP TABLE IF EXISTS last_contact")
    conn.execute("DROP TABLE IF EXISTS last_contact_merges")
    return LastContact(conn)


def test_last_contact_folds_merged_ids_in_any_arrival_order(store_url: str, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    app = LedgerApplication(parse_database_url(source))
    try:
        append_ok(app, contact_history())
        merge(app)
        append_ok(app, [BOB_SMS])
        merged = stored_events(source)
        unmerge(app)
        append_ok(app, [ANN_EMAIL])
        undone = stored_events(source)
        append_ok(app, [event("customer.created", "cleo", {"card": {}})])
        merge(app, into="cleo")  # bob, released, merged into another customer
        moved = stored_events(source)
    finally:
        app.close()
    assert [e.type for e in merged if e.type in MERGE_TYPES] == list(MERGE_TYPES[:2])
    assert [e.type for e in undone if e.type in MERGE_TYPES] == list(MERGE_TYPES)

    rng = random.Random(5)
    with Connection(parse_database_url(store_url)) as conn:
        for events in [merged, *each_customer_first(merged), deliveries(merged, rng)]:
            handle = fresh(conn)
            # Everything again afterwards: a redelivery after a reset changes nothing.
            for e in [*events, *events]:
                handle(e)
            assert answers(conn) == {"ann": FOLDED, "bob": FOLDED}, [e.type for e in events]
            assert merged_into(conn, "bob") == "ann" and members(conn, "ann") == ("ann", "bob")
            assert own(conn) == {"ann": EXPECTED["ann"], "bob": BOB_OWN}

        # The undo, delivered after the merge was folded: each is its own again.
        for tail_order in (0, 1):
            handle = fresh(conn)
            for e in merged:
                handle(e)
            tail = undone[len(merged) :]
            for e in each_customer_first(tail)[tail_order]:
                handle(e)
            assert answers(conn) == {"ann": ANN_AFTER_UNDO, "bob": BOB_OWN}
            assert merged_into(conn, "bob") is None and members(conn, "ann") == ("ann",)

        # The whole history in orders where the partitions run far apart: bob's
        # `customer.released` may come before ann's `customer.merged`, or ann's
        # `customer.unmerged` before bob's `customer.absorbed`.
        for events in [*each_customer_first(undone), deliveries(undone, rng)]:
            handle = fresh(conn)
            for e in events:
                handle(e)
            assert answers(conn) == {"ann": ANN_AFTER_UNDO, "bob": BOB_OWN}
        # Bob then merged into cleo: however late ann's partition brings its
        # `customer.unmerged` of bob, bob stays in cleo (the latest merge event about
        # him decides, by ledger position, not the last to arrive). Even the whole
        # history backwards, which no partition delivers, ends the same.
        for events in [*each_customer_first(moved), deliveries(moved, rng), moved[::-1]]:
            handle = fresh(conn)
            for e in events:
                handle(e)
            assert answers(conn) == {"ann": ANN_AFTER_UNDO, "bob": BOB_OWN}
            assert last_contact_of(conn, "cleo") == last_contact_of(conn, "bob")
            assert merged_into(conn, "bob") == "cleo" and members(conn, "ann") == ("ann",)

        # Erasing a merged customer erases its whole merge: each gets customer.erased.
        for customer in ("cleo", "bob"):
            erased = event("customer.erased", customer, {"reason": "x", "requested_by": "u"})
            erased |= {"recorded_at": erased["occurred_at"], "schema_version": 1}
            handle(parse_recorded_json(json.dumps(erased)))
        assert last_contact_of(conn, "cleo") is None and last_contact_of(conn, "bob") is None
        assert without_event_id(last_contact_of(conn, "ann")) == ANN_AFTER_UNDO


def partition_of(key: bytes, partitions: int = DEFAULT_PARTITIONS) -> int:
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def test_relay_carries_merge_events_by_customer_and_last_contact_folds_them(
    pg_url: str, kafka_broker: TansuBroker
) -> None:
    # The merge events of one merge land on two partitions: nothing orders them.
    assert partition_of(b"ann") != partition_of(b"bob")
    bootstrap = kafka_broker.bootstrap
    app = LedgerApplication(parse_database_url(pg_url))
    seen = PostgresSeenStore(pg_url)
    try:
        append_ok(app, contact_history())
        merge(app)
        append_ok(app, [BOB_SMS])
        first = relay_all(pg_url, bootstrap)
        with Connection(parse_database_url(pg_url)) as conn:
            handler = LastContact(conn)
            sub = subscriber(handler, bootstrap, "last-contact", seen=seen)
            with running(sub):
                wait_for(lambda: sub.stats.handled == first)
                assert answers(conn) == {"ann": FOLDED, "bob": FOLDED}

                unmerge(app)
                append_ok(app, [ANN_EMAIL])
                second = relay_all(pg_url, bootstrap)
                assert second == 3
                wait_for(lambda: sub.stats.handled == first + second)
                assert answers(conn) == {"ann": ANN_AFTER_UNDO, "bob": BOB_OWN}
            assert sub.stats.dead_lettered == 0
    finally:
        seen.close()
        app.close()

    with topic_reader(bootstrap) as reader:
        reader.read_until(lambda records: len(records) >= first + second)
        records = reader.records
    merges = sorted(
        (int(dict(r.headers)["position"]), dict(r.headers)["type"].decode(), r.key, r.partition)
        for r in records
        if dict(r.headers)["type"].decode() in MERGE_TYPES
    )
    # Keyed by the customer whose stream holds the event, on that customer's
    # partition with the rest of its events.
    assert [(t, k) for _, t, k, _ in merges] == [
        ("customer.merged", b"ann"),
        ("customer.absorbed", b"bob"),
        ("customer.unmerged", b"ann"),
        ("customer.released", b"bob"),
    ]
    created = {
        r.key: r.partition for r in records if dict(r.headers)["type"] == b"customer.created"
    }
    assert all(p == created[k] == partition_of(k) for _, _, k, p in merges)
