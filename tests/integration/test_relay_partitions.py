"""The relay's producer (librdkafka, `partitioner: murmur2_random`) puts every key on
the partition `relay/partitioner.py` (kafka-python's default partitioner, as the
relay used before) picks for the same partition count: a topic fed by an older
relay keeps each customer on its partition."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest

from consumers.kafka_config import KafkaSettings
from consumers.kafka_topics import ensure_topic
from relay.config import RelayConfig
from relay.partitioner import KeyHashPartitioner
from relay.producer import make_producer, producer_config

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
