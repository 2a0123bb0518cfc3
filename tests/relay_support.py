"""Shared by the relay and subscriber tests: histories to append, a topic reader, and
the delivery checks (every event at least once, each customer's events in order)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.reading import iter_rows
from tests.factories import event

TOPIC = "ledger.events"


def history(customers: list[str], per_customer: int, start: int = 0) -> list[dict[str, Any]]:
    """Valid events, customers interleaved: `customer.created` first (when `start` is
    0), then notes, calls, emails, SMS and chats in turns."""
    events: list[dict[str, Any]] = []
    if start == 0:
        events += [event("customer.created", c, {"card": {"name": c}}) for c in customers]
    for n in range(start, start + per_customer):
        for c in customers:
            kind = n % 5
            sid = f"{c}-{n}"
            if kind == 0:
                events.append(event("note.added", c, {"note_id": sid, "text": f"note {n}"}))
            elif kind == 1:
                data = {"call_id": sid, "direction": "outbound", "result": "answered"}
                events.append(event("call.logged", c, {**data, "duration_s": n}))
            elif kind == 2:
                events.append(event("email.sent", c, {"message_id": sid, "subject": f"s{n}"}))
            elif kind == 3:
                events.append(event("sms.sent", c, {"message_id": sid, "text": "hi"}))
            else:
                events.append(event("chat.started", c, {"dialog_id": sid, "channel": "website"}))
    return events


def stored_positions(url: str) -> dict[int, str]:
    """position -> customer_id of every stored event."""
    with Connection(parse_database_url(url)) as conn:
        return {row.position: row.decode().customer_id for row in iter_rows(conn)}


Record = Any  # kafka-python's ConsumerRecord


def position_of(record: Record) -> int:
    return int(dict(record.headers)["position"])


class TopicReader:
    """Reads every partition of a topic from the start, without a consumer group
    (no group join to wait for)."""

    def __init__(self, bootstrap: str, topic: str = TOPIC, wait_s: float = 15.0) -> None:
        self.topic = topic
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # Tansu holds a fetch for the whole max wait even when data arrives.
            fetch_max_wait_ms=20,
            # Must not recreate the topic (with 4 partitions) after a broker restart
            # before the relay does.
            allow_auto_create_topics=False,
            reconnect_backoff_max_ms=500,
        )
        deadline = time.monotonic() + wait_s
        partitions: set[int] | None = None
        while not partitions:
            # Empty (not None) while the topic does not exist yet.
            partitions = self.consumer.partitions_for_topic(topic)
            if not partitions:
                assert time.monotonic() < deadline, f"topic {topic} never appeared"
                time.sleep(0.1)
                self.consumer.poll(timeout_ms=0)
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.partitions)
        self.records: list[Record] = []

    def poll(self, timeout_ms: int = 100) -> list[Record]:
        got: list[Record] = []
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            got.extend(records)
        self.records.extend(got)
        return got

    def read_until(self, done: Callable[[list[Record]], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self.records):
            assert time.monotonic() < deadline, (
                f"gave up after {timeout_s}s with {len(self.records)} records"
            )
            self.poll()

    def read_positions(self, wanted: set[int], timeout_s: float = 20.0) -> None:
        def done(records: list[Record]) -> bool:
            return wanted <= {position_of(r) for r in records}

        self.read_until(done, timeout_s)

    def drain(self, quiet_s: float = 0.3, timeout_s: float = 10.0) -> None:
        """Read until every partition is at its high watermark and nothing new came
        for `quiet_s` (positions and high watermarks, not end_offsets(): Tansu's
        ListOffsets is wrong)."""
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.poll(timeout_ms=50):
                quiet_since = time.monotonic()
                continue
            at_end = all(
                self.consumer.highwater(tp) is not None
                and self.consumer.position(tp) >= self.consumer.highwater(tp)
                for tp in self.partitions
            )
            if at_end and time.monotonic() - quiet_since >= quiet_s:
                return
        raise AssertionError(f"could not drain {self.topic} within {timeout_s}s")

    def restart_from_beginning(self) -> None:
        """After the broker came back empty: the old offsets mean nothing any more."""
        self.consumer.seek_to_beginning(*self.partitions)

    def close(self) -> None:
        self.consumer.close()


@contextmanager
def topic_reader(bootstrap: str, topic: str = TOPIC) -> Iterator[TopicReader]:
    reader = TopicReader(bootstrap, topic)
    try:
        yield reader
    finally:
        reader.close()


def assert_delivered_in_order(records: list[Record], stored: dict[int, str]) -> None:
    """Every stored event at least once; per customer, first deliveries in position
    order (a re-sent event may come again later, it may not jump the queue)."""
    seen: set[int] = set()
    per_customer: dict[str, list[int]] = defaultdict(list)
    for r in records:
        position = position_of(r)
        customer = r.key.decode()
        assert stored.get(position) == customer, (position, customer)
        if position in seen:
            continue
        seen.add(position)
        per_customer[customer].append(position)
    missing = sorted(set(stored) - seen)
    assert not missing, f"{len(missing)} events never delivered, first {missing[:10]}"
    for customer, positions in per_customer.items():
        assert positions == sorted(positions), f"{customer} out of order: {positions[:20]}"
