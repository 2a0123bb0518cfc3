"""The relay's Kafka side: one idempotent producer and the batches in flight on it.

A batch is queued on the producer without waiting (`send`); `await_oldest` waits
until librdkafka's delivery reports confirm every message of the oldest batch.
Any failure raises `PublishFailed`, after which the caller closes the publisher and
sends again from the acknowledged position: an idempotent producer that lived
through a broker restart never recovers, so it is never reused after a failure.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumers.kafka_config import KafkaSettings
from consumers.kafka_connect import KafkaUnavailable, connect_or_fail
from consumers.kafka_topics import ensure_topic
from ledger.reading import StoredRow
from relay.config import RelayConfig
from relay.errors import RelayFatal
from relay.messages import Header, build_message
from relay.producer import describe_error, is_fatal, make_producer, producer_config

# A batch is cut short once its values reach this size, so huge events cannot pile
# up unbounded in the producer's memory.
MAX_PENDING_BYTES = 16 * 1024 * 1024
# How long one wait on the producer lasts before the deadline and a stop are checked.
POLL_S = 0.1


class PublishFailed(Exception):
    """Kafka failed us this time; retrying (with a new producer) may help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Batch:
    """Messages sent together, acknowledged together: done once librdkafka reported
    each one delivered, or any one failed."""

    __slots__ = ("count", "delivered", "error", "last_position")

    def __init__(self, last_position: int) -> None:
        self.count = 0
        self.delivered = 0
        self.error: KafkaError | None = None
        self.last_position = last_position

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        """librdkafka's delivery report for one of the batch's messages."""
        if error is None:
            self.delivered += 1
        elif self.error is None:
            self.error = error

    @property
    def done(self) -> bool:
        return self.error is not None or self.delivered == self.count


class Publisher:
    """One idempotent producer and the batches in flight on it (see the module
    docstring). After any `PublishFailed` it is closed and a new producer made, never
    reused."""

    def __init__(self, kafka: KafkaSettings, config: RelayConfig, stop: threading.Event) -> None:
        self.kafka = kafka
        self.config = config
        # Built now: a SASL mechanism librdkafka lacks is a ConfigError before any work.
        self._conf = producer_config(kafka, config)
        self._stop = stop
        self._producer: Producer | None = None
        # librdkafka's last error (error_cb) and its fatal one, for this producer.
        self._last_error: KafkaError | None = None
        self._fatal: KafkaError | None = None
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
        """Connect to the brokers and create the topic, or raise `KafkaUnavailable`.

        kafka-python's admin client creates the topic on every (re)connect (a broker
        that came back empty has lost it); only then is a producer made."""
        cfg = self.config

        def make() -> bool:
            ensure_topic(self.kafka, cfg.topic, cfg.partitions, cfg.replication_factor)
            return True

        connect_or_fail(self.kafka, make, cancel=self._stop)
        self._last_error = self._fatal = None
        try:
            self._producer = make_producer(self._conf, self._on_error)
        except KafkaException as exc:
            raise KafkaUnavailable(
                f"Kafka producer cannot start at {self.kafka.describe()}: {exc.args[0].str()}"
            ) from None

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
                # Dropping the last reference then destroys it without waiting.
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                producer.poll(0)
            except Exception:  # a broken producer may fail to purge; it is discarded anyway
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
        assert producer is not None
        produce = producer.produce
        topic = self.config.topic
        tenant = None if self.config.tenant is None else self.config.tenant.encode()
        batch = Batch(self.sent)
        on_delivery = batch.on_delivery
        pending_bytes = 0
        try:
            for row in rows:
                key, value, headers = build_message(row, tenant)
                try:
                    produce(topic, value, key, on_delivery=on_delivery, headers=headers)
                except BufferError:  # librdkafka's queue is full: wait for room
                    self._produce_when_room(producer, topic, value, key, headers, on_delivery)
                batch.count += 1
                batch.last_position = row.position
                pending_bytes += len(value)
                if pending_bytes >= MAX_PENDING_BYTES:
                    break
            # Serves the delivery reports that are in (and hands librdkafka's errors over).
            producer.poll(0)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            self._check_fatal(error, acknowledged)
            raise PublishFailed(describe_error(error, self._last_error)) from None
        finally:
            if batch.count:
                self._in_flight.append(batch)
                self.sent = batch.last_position

    def await_oldest(self, flush: bool, acknowledged: int) -> Batch:
        """Wait until the oldest in-flight batch is acknowledged and hand it back.
        Acks that never come (broker gone) are waited out by the delivery timeout;
        a stop request does not have to wait for that. With `flush` (nothing left
        to read), lingering messages are sent at once."""
        batch = self._in_flight[0]
        producer = self._producer
        assert producer is not None
        wait = producer.flush if flush else producer.poll
        deadline = time.monotonic() + self.config.delivery_timeout_s + 5
        while not batch.done:
            if self._fatal is not None:
                raise PublishFailed(describe_error(self._fatal))
            self._check_waiting(deadline)
            try:
                wait(POLL_S)
            except KafkaException as exc:
                raise PublishFailed(describe_error(exc.args[0], self._last_error)) from None
        if batch.error is not None:
            self._check_fatal(batch.error, acknowledged)
            raise PublishFailed(describe_error(batch.error, self._last_error))
        return self._in_flight.popleft()

    def _produce_when_room(
        self,
        producer: Producer,
        topic: str,
        value: bytes,
        key: bytes,
        headers: list[Header],
        on_delivery: Any,
    ) -> None:
        deadline = time.monotonic() + self.config.delivery_timeout_s + 5
        while True:
            self._check_waiting(deadline)
            producer.poll(POLL_S)
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery, headers=headers)
                return
            except BufferError:
                continue

    def _on_error(self, error: KafkaError) -> None:
        # Called by librdkafka through poll()/flush(), on the relay's thread.
        self._last_error = error
        if error.fatal():
            self._fatal = error

    def _check_waiting(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise PublishFailed("no acknowledgement within the delivery timeout")
        if self._stop.is_set():
            raise PublishFailed("stopping before the broker acknowledged the batch")

    def _check_fatal(self, error: KafkaError, acknowledged: int) -> None:
        if is_fatal(error):
            raise RelayFatal(
                f"Kafka refused to store the event after position {acknowledged} on "
                f"{self.config.topic}: {describe_error(error)}"
            )
