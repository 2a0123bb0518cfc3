"""The relay's partitioner places every message where kafka-python's default
partitioner does: a topic the relay fed before keeps each customer on its partition."""

from __future__ import annotations

import random

from kafka.partitioner.default import DefaultPartitioner

from relay.partitioner import KeyHashPartitioner


class Topics:
    """Cluster metadata as a partitioner reads it: the partitions of each topic."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return set(self.partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.partitions[topic]) if topic in self.partitions else None

    def available_partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions_for_topic(topic)


def test_every_key_lands_where_the_default_partitioner_puts_it() -> None:
    rng = random.Random(3)
    keys = [b"", b"c", "Zoë «x»".encode(), b"cust-1", b"x" * 101]
    keys += [rng.randbytes(rng.randint(1, 40)) for _ in range(2_000)]
    cluster = Topics({"six": set(range(6)), "odd": {4, 0, 9}, "one": {0}})
    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    for topic in ("six", "odd", "one"):
        for key in keys + keys:  # the second time from the kept hashes
            expected = default.partition(topic, key, key, b"v", b"v", cluster)
            assert ours.partition(topic, key, key, b"v", b"v", cluster) == expected


def test_a_topic_that_grew_partitions_is_spread_over_all_of_them() -> None:
    cluster = Topics({"t": set(range(3))})
    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    keys = [f"cust-{i}".encode() for i in range(300)]
    before = [ours.partition("t", k, k, None, None, cluster) for k in keys]
    cluster.partitions["t"] = set(range(12))
    after = [ours.partition("t", k, k, None, None, cluster) for k in keys]
    assert after == [default.partition("t", k, k, None, None, cluster) for k in keys]
    assert max(before) == 2 and max(after) == 11


def test_messages_without_a_key_go_to_some_partition() -> None:
    cluster = Topics({"t": set(range(6))})
    ours = KeyHashPartitioner()
    chosen = {ours.partition("t", None, None, b"v", b"v", cluster) for _ in range(200)}
    assert chosen <= set(range(6)) and len(chosen) > 1
