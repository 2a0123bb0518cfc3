"""The Tansu fixture against a real broker, through kafka-python."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

if TYPE_CHECKING:
    # Only for annotations: importing it at run time, before conftest.py registers it
    # as a plugin, would stop pytest from rewriting its asserts.
    from tests.kafka_broker import TansuBroker

# Group joins wait about half the session timeout; the 45 s default would dominate.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


def _poll_until(consumer: KafkaConsumer, count: int, timeout_s: float = 12.0) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend((r.key, r.value, list(r.headers)) for r in records)
    return got


def test_round_trip_keys_values_headers_in_a_consumer_group(kafka_broker: TansuBroker) -> None:
    topic = "ledger.events"
    kafka_broker.create_topic(topic, partitions=3)
    assert kafka_broker.list_topics() == [topic]

    sent: list[Record] = []
    for seq in range(6):
        for customer in ("cust-a", "cust-b", "cust-c", "cust-d", "cust-e"):
            value = json.dumps({"customer_id": customer, "seq": seq}).encode()
            headers = [("event_id", uuid.uuid4().hex.encode()), ("type", b"note.added")]
            sent.append((customer.encode(), value, headers))

    producer = KafkaProducer(
        bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=True, acks="all"
    )
    try:
        futures = [producer.send(topic, key=k, value=v, headers=h) for k, v, h in sent]
        producer.flush(timeout=10)
        metadata = [f.get(timeout=10) for f in futures]
    finally:
        producer.close(timeout=5)

    partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
    for (key, _, _), md in zip(sent, metadata, strict=True):
        partitions_by_key[key].add(md.partition)
    # Per-customer order on the topic rests on a key always mapping to one partition.
    assert all(len(p) == 1 for p in partitions_by_key.values()), partitions_by_key

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **FAST_GROUP,
    )
    try:
        got = _poll_until(consumer, len(sent))
        assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2}
        consumer.commit()
        # Positions, not end_offsets(): Tansu's ListOffsets(latest) answers the last
        # batch's base offset + 1, short of the end whenever that batch held several.
        positions = {tp: consumer.position(tp) for tp in consumer.assignment()}
        assert sum(positions.values()) == len(sent)
        assert all(consumer.committed(tp) == offset for tp, offset in positions.items())
    finally:
        consumer.close()

    assert sorted(got) == sorted(sent)
    for key in partitions_by_key:
        assert [r for r in got if r[0] == key] == [r for r in sent if r[0] == key]


def test_restart_gives_empty_broker_on_same_port(kafka_broker: TansuBroker) -> None:
    topic = "restarted"
    kafka_broker.create_topic(topic)
    bootstrap = kafka_broker.bootstrap
    # Idempotence off on purpose (kafka-python 3 turns it on by default): an idempotent
    # producer cannot outlive a Tansu restart, the new broker rejects its producer id.
    survivor = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        reconnect_backoff_max_ms=500,
    )
    try:
        assert survivor.send(topic, key=b"k", value=b"before").get(timeout=10).offset == 0

        kafka_broker.stop()
        assert not kafka_broker.running
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=1).close()

        kafka_broker.start()
        assert kafka_broker.bootstrap == bootstrap
        assert kafka_broker.list_topics() == []

        # Recreated before producing: auto-creation would pick 4 partitions.
        kafka_broker.create_topic(topic)
        assert survivor.send(topic, key=b"k", value=b"after").get(timeout=10).offset == 0
    finally:
        survivor.close(timeout=5)

    fresh = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    try:
        fresh.send(topic, key=b"k", value=b"fresh").get(timeout=10)
    finally:
        fresh.close(timeout=5)

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        got = _poll_until(consumer, 2, timeout_s=5)
    finally:
        consumer.close()
    assert [value for _, value, _ in got] == [b"after", b"fresh"]
