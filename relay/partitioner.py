"""The partition of a keyed message, as kafka-python's default partitioner picks it
(murmur2 of the key, as Java's does): the partitions the relay has always used.

The relay's producer (librdkafka) places messages itself with its `murmur2_random`
partitioner; tests hold it to this one for the same partition count, so a topic fed
by an older relay keeps each customer on its partition. `KeyHashPartitioner` also
serves any kafka-python producer that must agree with the relay: it hashes each key
once (murmur2 in pure Python is the costly part).
"""

from __future__ import annotations

from typing import Any

from kafka.partitioner.default import DefaultPartitioner, murmur2

# Keys whose hash is kept; past this the cache starts afresh (memory stays flat
# however many customers a store holds).
MAX_KEYS = 100_000


class KeyHashPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """`DefaultPartitioner`'s choice for every message (murmur2 of the key over all
    of the topic's partitions, in order; a random available one without a key),
    with each key's hash computed once."""

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            chosen: int = super().partition(
                topic, key, serialized_key, value, serialized_value, cluster
            )
            return chosen
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= MAX_KEYS:
                self._hashes.clear()
            hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        ordered: list[int] = sorted(partitions)
        return ordered[hashed % len(ordered)]
