"""The relay's Kafka side: one idempotent producer and the batches in flight on it.

A batch is queued on the producer without waiting (`send`); `await_oldest` waits
for the oldest batch's acknowledgements. Any failure raises `PublishFailed`, after
which the caller closes the publisher and sends again from the acknowledged
position: an idempotent producer that lived through a broker restart never
recovers, so it is never reused after a failure.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consumers.kafka_config import KafkaSettings
from consumers.kafka_connect import KafkaUnavailable, connect_or_fail
from consumers.kafka_topics import ensure_topic
from ledger.reading import StoredRow
from relay.config import MAX_IN_FLIGHT, RelayConfig
from relay.errors import RelayFatal, describe
from relay.messages import build_message

# A batch is cut short once its values reach this size, so huge events cannot pile
# up unbounded in the producer's memory.
MAX_PENDING_BYTES = 16 * 1024 * 1024

# Producer errors that no amount of retrying fixes.
_FATAL_ERRORS = (
    "MessageSizeTooLargeError",
    "RecordListTooLargeError",
    "InvalidTopicError",
    "TopicAuthorizationFailedError",
    "ClusterAuthorizationFailedError",
    "TransactionalIdAuthorizationFailedError",
)


class PublishFailed(Exception):
    """Kafka failed us this time; retrying (with a new producer) may help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Batch:
    """Messages sent together, acknowledged together."""

    futures: list[Any]
    last_position: int


class Publisher:
    """One idempotent producer and the batches in flight on it (see the module
    docstring). After any `PublishFailed` it is closed and a new producer made, never
    reused."""

    def __init__(self, kafka: KafkaSettings, config: RelayConfig, stop: threading.Event) -> None:
        self.kafka = kafka
        self.config = config
        self._stop = stop
        self._producer: Any = None
        # Sent but not yet acknowledged, oldest first; `sent` is the last position sent.
        self._in_flight: deque[Batch] = deque()
        self.sent = 0

    @property
    def connected(self) -> bool:
        return self._producer is not None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def connect(self) -> None:
        """Connect to the brokers and create the topic, or raise `KafkaUnavailable`."""
        self._producer = self._make_producer()

    def forget(self, acknowledged: int) -> None:
        """Whatever is in flight is sent again from the acknowledged position."""
        self._in_flight.clear()
        self.sent = acknowledged

    def close(self, acknowledged: int) -> None:
        self.forget(acknowledged)
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                # Nothing left in it is needed: unacknowledged messages are re-sent.
                producer.close(timeout=0)
            except Exception:  # a broken producer may fail to close; it is discarded anyway
                pass

    def send(self, rows: Sequence[StoredRow], acknowledged: int) -> None:
        """Queue `rows` on the producer as one in-flight batch (no waiting for acks).

        Stops early once the batch's values reach MAX_PENDING_BYTES; the rest is
        read again next time."""
        if self._producer is None:
            try:
                self.connect()
            except KafkaUnavailable as exc:
                raise PublishFailed(str(exc)) from None
        producer = self._producer
        topic = self.config.topic
        futures: list[Any] = []
        pending_bytes = 0
        last = self.sent
        try:
            for row in rows:
                key, value, headers = build_message(row)
                futures.append(producer.send(topic, value=value, key=key, headers=headers))
                last = row.position
                pending_bytes += len(value)
                if pending_bytes >= MAX_PENDING_BYTES:
                    break
        except (RelayFatal, PublishFailed):
            raise
        except Exception as exc:
            self._check_fatal(exc, acknowledged)
            raise PublishFailed(describe(exc)) from None
        finally:
            if futures:
                self._in_flight.append(Batch(futures, last))
                self.sent = last

    def await_oldest(self, flush: bool, acknowledged: int) -> Batch:
        """Wait until the oldest in-flight batch is acknowledged and hand it back.
        Acks that never come (broker gone) are waited out by the delivery timeout;
        a stop request does not have to wait for that."""
        batch = self._in_flight[0]
        producer = self._producer
        deadline = time.monotonic() + self.config.delivery_timeout_s + 5
        if flush:
            while True:
                try:
                    producer.flush(timeout=0.5)
                    break
                except Exception as exc:
                    if type(exc).__name__ != "KafkaTimeoutError":
                        raise PublishFailed(describe(exc)) from None
                self._check_waiting(deadline)
        for future in batch.futures:
            while not future.is_done:
                try:
                    future.get(timeout=0.5)
                except Exception:  # a failure is read from the future below
                    if not future.is_done:
                        self._check_waiting(deadline)
            if not future.succeeded():
                error = future.exception
                self._check_fatal(error, acknowledged)
                raise PublishFailed(describe(error))
        return self._in_flight.popleft()

    def _make_producer(self) -> Any:
        from kafka import KafkaProducer

        from relay.partitioner import KeyHashPartitioner

        cfg = self.config
        kwargs = self.kafka.client_kwargs()
        delivery_ms = int(cfg.delivery_timeout_s * 1000)

        def make() -> Any:
            # Every (re)connect: a broker that came back empty has lost the topic.
            ensure_topic(self.kafka, cfg.topic, cfg.partitions, cfg.replication_factor)
            return KafkaProducer(
                **kwargs,
                acks="all",
                enable_idempotence=True,
                max_in_flight_requests_per_connection=MAX_IN_FLIGHT,
                linger_ms=cfg.linger_ms,
                batch_size=cfg.batch_bytes,
                compression_type=cfg.compression,
                max_request_size=cfg.max_request_size,
                delivery_timeout_ms=delivery_ms,
                request_timeout_ms=max(1000, min(30_000, delivery_ms - cfg.linger_ms - 100)),
                # A missing topic (a broker that came back empty) must fail fast and
                # be recreated with our partition count, not auto-created with the
                # broker's.
                allow_auto_create_topics=False,
                max_block_ms=max(1000, min(10_000, delivery_ms)),
                partitioner=KeyHashPartitioner(),
            )

        return connect_or_fail(self.kafka, make, cancel=self._stop)

    def _check_waiting(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise PublishFailed("no acknowledgement within the delivery timeout")
        if self._stop.is_set():
            raise PublishFailed("stopping before the broker acknowledged the batch")

    def _check_fatal(self, exc: BaseException | None, acknowledged: int) -> None:
        if exc is not None and type(exc).__name__ in _FATAL_ERRORS:
            raise RelayFatal(
                f"Kafka refused to store the event after position {acknowledged} on "
                f"{self.config.topic}: {describe(exc)}"
            )
