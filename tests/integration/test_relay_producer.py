"""The relay's producer (librdkafka) against a real broker: `partitioner:
murmur2_random` puts every key on the partition `relay/partitioner.py`
(kafka-python's default partitioner, as the relay used before) picks for the same
partition count, so a topic fed by an older relay keeps each customer on its
partition; and what librdkafka refuses for good stops the relay."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest

from consumers.kafka_config import KafkaSettings
from consumers.kafka_topics import ensure_topic
from ledger.config import parse_database_url
from ledger.db import Connection
from relay import Relay, RelayFatal, relay_status
from relay.config import RelayConfig
from relay.partitioner import KeyHashPartitioner
from relay.producer import make_producer, producer_config
from tests.factories import append_to_url, event
from tests.relay_support import TOPIC, stored_positions

if TYPE_CHECKING:
    from tests.kafka_broker import TansuBroker


class OneTopic:
    """Cluster metadata as kafka-python's partitioners read it."""

    def __init__(self, count: int) -> None:
        self.count = count

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    available_partitions_for_topic = partitions_for_topic


def sample_keys() -> list[bytes]:
    rng = random.Random(7)
    keys = [b"c", "Zoë «x»".encode(), b"x" * 101, b"00000000-0000-0000-0000-000000000001"]
    keys += [f"cust-{i}".encode() for i in range(300)]
    keys += [rng.randbytes(rng.randint(1, 40)) for _ in range(300)]
    return keys


@pytest.mark.parametrize("count", [6, 5, 1])
def test_every_key_lands_where_our_partitioner_puts_it(
    kafka_broker: TansuBroker, count: int
) -> None:
    settings = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    topic = f"partitions.{count}"
    assert ensure_topic(settings, topic, count)
    errors: list[Any] = []
    producer = make_producer(
        producer_config(settings, RelayConfig(topic=topic, delivery_timeout_s=10)), errors.append
    )
    placed: dict[bytes, set[int]] = {}

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            placed.setdefault(message.key(), set()).add(message.partition())

    keys = sample_keys()
    for key in keys + keys:
        producer.produce(topic, b"v", key, on_delivery=on_delivery)
    assert producer.flush(20) == 0
    assert not errors, errors

    ours, cluster = KeyHashPartitioner(), OneTopic(count)
    expected = {k: {ours.partition(topic, k, k, b"v", b"v", cluster)} for k in keys}
    assert placed == expected
    if count > 1:
        assert len(set().union(*placed.values())) == count  # spread over all of them


def test_an_event_over_the_message_limit_stops_the_relay_for_good(
    sqlite_url: str, kafka_broker: TansuBroker
) -> None:
    # librdkafka refuses it before sending (MSG_SIZE_TOO_LARGE): no retry can help,
    # and the position stays before it.
    append_to_url(sqlite_url, [event("customer.created", "ann", {"card": {}})])
    small = max(stored_positions(sqlite_url))

    def relay() -> Relay:
        return Relay(
            parse_database_url(sqlite_url),
            KafkaSettings(bootstrap=kafka_broker.bootstrap),
            RelayConfig(max_request_size=4000, batch_bytes=2000, delivery_timeout_s=5),
        )

    assert relay().run().position == small
    append_to_url(sqlite_url, [event("note.added", "ann", {"note_id": "n", "text": "x" * 5000})])
    with pytest.raises(RelayFatal, match=f"after position {small} on {TOPIC}: .*too large"):
        relay().run()
    with Connection(parse_database_url(sqlite_url)) as conn:
        assert relay_status(conn, TOPIC).position == small
