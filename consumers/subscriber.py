"""Subscriber kit: consume the ledger's event stream in a consumer group.

A downstream service writes a handler, a function that takes one `RecordedEvent`
(the validated pydantic model, `data` typed per event type), and runs it:

    def handle(event: RecordedEvent) -> None:
        ...

    Subscriber(handle, settings_from_env(), SubscriberConfig(group_id="my-service"),
               seen=PostgresSeenStore(DB_URL)).run()

What the base does around the handler:

- events arrive in order per customer (the relay keys them by customer_id, or by
  `TENANT/CUSTOMER_ID` for a hosted deployment's tenants) and are handled one at a
  time; `event.tenant` is the message's `tenant` header (None for a single ledger);
- an offset is committed only after the handler succeeded for it (or the event was
  dead-lettered), so a crash means redelivery, never loss;
- redeliveries are skipped by `event_id` (a tenant's as `TENANT/EVENT_ID`) through a
  seen-store (`consumers.seen_store`);
- a handler that raises is retried with back-off; after `max_attempts` the event goes
  to the dead-letter topic with the reason in its headers and the stream moves on.
  Raise `DeadLetter` to skip the retries. A message that is not a valid envelope
  (another producer on the topic) is dead-lettered at once;
- SIGTERM or SIGINT (or `stop()`) finishes the event in hand, commits, and returns.
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener

from consumers.kafka_config import DEFAULT_DLQ_TOPIC, DEFAULT_TOPIC, KafkaSettings
from consumers.kafka_connect import KafkaUnavailable, connect_or_fail
from consumers.kafka_topics import ensure_topic
from consumers.seen_store import SeenStore
from ledger.backoff import Backoff
from ledger.events import ContractError, RecordedEvent, parse_recorded_json
from ledger.signals import stop_on_signals

log = logging.getLogger("ledger.subscriber")

# Header names on dead-lettered messages; the original headers are kept before them.
DLQ_REASON = "dlq.reason"
DLQ_ERROR = "dlq.error"
DLQ_ATTEMPTS = "dlq.attempts"
DLQ_SOURCE_TOPIC = "dlq.source_topic"
DLQ_SOURCE_PARTITION = "dlq.source_partition"
DLQ_SOURCE_OFFSET = "dlq.source_offset"
DLQ_GROUP = "dlq.consumer_group"
DLQ_FAILED_AT = "dlq.failed_at"


class Handler(Protocol):
    """What a downstream service writes: a function of one event (see the module docstring)."""

    def __call__(self, event: RecordedEvent) -> None:
        """Apply one event. An exception has it retried with back-off, then
        dead-lettered; `DeadLetter` dead-letters it at once."""


class DeadLetter(Exception):
    """Raise from a handler to send the event to the dead-letter topic without retries
    (the handler knows retrying cannot help). The message becomes the reason."""


@dataclass
class SubscriberConfig:
    """How a subscriber consumes: its consumer group and topics, the handler's retries
    and back-off, and the Kafka consumer's tuning."""

    group_id: str
    topic: str = DEFAULT_TOPIC
    dead_letter_topic: str = DEFAULT_DLQ_TOPIC
    # Handler calls per event before it is dead-lettered.
    max_attempts: int = 5
    retry_backoff_s: float = 0.5
    max_retry_backoff_s: float = 10.0
    # Kafka-python's 45 s default makes every group join wait about 20 s.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_records: int = 500
    # How long a fetch may wait for new data. Kafka answers as soon as there is some;
    # some Kafka-protocol brokers (Tansu) wait the whole time, which becomes latency.
    fetch_max_wait_ms: int = 100
    # A new group starts from the beginning: downstream services get every event.
    auto_offset_reset: str = "earliest"
    poll_timeout_ms: int = 500
    client_id: str | None = None


@dataclass
class SubscriberStats:
    """Counts of what a subscriber did with the messages it consumed, since it started."""

    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    invalid: int = 0
    retries: int = 0
    commits: int = 0

    @property
    def processed(self) -> int:
        """Messages done with: handled, skipped as duplicates or dead-lettered."""
        return self.handled + self.duplicates + self.dead_lettered


class _Stopping(Exception):
    pass


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Offsets are committed after every polled batch, before the next poll (the
        # only place a rebalance runs), so nothing handled is left uncommitted here.
        if revoked:
            log.info("subscriber %s: partitions revoked: %s", self.subscriber.group, _tps(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("subscriber %s: partitions assigned: %s", self.subscriber.group, _tps(assigned))
        self.subscriber.assigned.set()


def _tps(partitions: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)) or "none"


@dataclass
class Subscriber:
    """Runs one handler over the ledger's event stream in a consumer group: committing
    after success, skipping redeliveries, retrying, then dead-lettering (see the
    module docstring)."""

    handler: Handler
    kafka: KafkaSettings
    config: SubscriberConfig
    seen: SeenStore | None = None
    stats: SubscriberStats = field(default_factory=SubscriberStats)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        # Set once the group gave this member partitions (tests and health checks).
        self.assigned = threading.Event()
        self._dlq_producer: Any = None
        self._dlq_failing = False

    @property
    def group(self) -> str:
        """The consumer group's id: the name the group's offsets and seen event ids are
        kept under."""
        return self.config.group_id

    def stop(self) -> None:
        """Finish the event in hand, commit, and return from `run()` (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop has been asked for."""
        return self._stop.is_set()

    def run(self, *, handle_signals: bool = True) -> SubscriberStats:
        """Consume until `stop()`, SIGTERM or SIGINT. Raises `KafkaUnavailable` if the
        brokers do not answer at start-up."""
        consumer = connect_or_fail(self.kafka, self._make_consumer)
        try:
            consumer.subscribe([self.config.topic], listener=_Rebalance(self))
            log.info(
                "subscriber %s: consuming %s (dead letters to %s after %d attempts)",
                self.group,
                self.config.topic,
                self.config.dead_letter_topic,
                self.config.max_attempts,
            )
            with stop_on_signals(self.stop) if handle_signals else nullcontext():
                while not self._stop.is_set():
                    self._poll_once(consumer)
        finally:
            try:
                consumer.close(autocommit=False)
            finally:
                self._close_dlq_producer()
            log.info(
                "subscriber %s: stopped; handled %d, duplicates %d, dead-lettered %d",
                self.group,
                self.stats.handled,
                self.stats.duplicates,
                self.stats.dead_lettered,
            )
        return self.stats

    # -- consuming ----------------------------------------------------------------

    def _make_consumer(self) -> Any:
        from kafka import KafkaConsumer

        cfg = self.config
        ensure_topic(self.kafka, cfg.dead_letter_topic, partitions=1)
        kwargs = self.kafka.client_kwargs()
        if cfg.client_id:
            kwargs["client_id"] = cfg.client_id
        return KafkaConsumer(
            **kwargs,
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset=cfg.auto_offset_reset,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            max_poll_records=cfg.max_poll_records,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            # Subscribing must not create the topic with the broker's partition count:
            # the relay creates it.
            allow_auto_create_topics=False,
        )

    def _poll_once(self, consumer: Any) -> None:
        from kafka.structs import OffsetAndMetadata

        batch = consumer.poll(timeout_ms=self.config.poll_timeout_ms)
        done: dict[Any, Any] = {}
        try:
            for tp, records in batch.items():
                for record in records:
                    if self._stop.is_set() or not self._process(record):
                        raise _Stopping
                    done[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
        except _Stopping:
            pass
        finally:
            if done:
                self._commit(consumer, done)

    def _commit(self, consumer: Any, offsets: dict[Any, Any]) -> None:
        from kafka.errors import KafkaError

        try:
            consumer.commit(offsets)
            self.stats.commits += 1
        except KafkaError as exc:
            # Not fatal: the uncommitted events come again (to us or to the member
            # that now owns the partition) and the seen-store skips them.
            log.warning(
                "subscriber %s: commit failed (%s); those events will be delivered again",
                self.group,
                exc,
            )

    def _process(self, record: Any) -> bool:
        """Handle one message; False if a stop request interrupted it (not done)."""
        value = record.value
        try:
            if value is None:
                raise ContractError([], None)
            event = parse_recorded_json(value)
        except ContractError as exc:
            self.stats.invalid += 1
            reason = f"not a valid ledger event: {exc}" if str(exc) else "empty message value"
            return self._dead_letter(record, reason, "ContractError", 0)
        tenant = _tenant_of(record)
        event.with_tenant(tenant)
        # Event ids are unique within one ledger: a tenant's are told apart by it.
        event_id = str(event.event_id) if tenant is None else f"{tenant}/{event.event_id}"
        if self.seen is not None and self.seen.seen(self.group, event_id):
            self.stats.duplicates += 1
            return True
        backoff = self._backoff()
        attempt = 0
        while True:
            attempt += 1
            try:
                self.handler(event)
                break
            except DeadLetter as exc:
                return self._dead_letter(
                    record, str(exc) or "rejected by the handler", exc, attempt
                )
            except Exception as exc:
                if attempt >= self.config.max_attempts:
                    reason = f"handler failed {attempt} times, last: {type(exc).__name__}: {exc}"
                    return self._dead_letter(record, reason, exc, attempt)
                self.stats.retries += 1
                delay = backoff.next()
                log.warning(
                    "subscriber %s: %s %s (position %s) failed, attempt %d of %d: %s: %s; "
                    "retrying in %.2fs",
                    self.group,
                    event.type,
                    event_id,
                    event.position,
                    attempt,
                    self.config.max_attempts,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                if self._stop.wait(delay):
                    return False
        if self.seen is not None:
            self.seen.mark(self.group, event_id)
        self.stats.handled += 1
        return True

    def _backoff(self) -> Backoff:
        return Backoff(self.config.max_retry_backoff_s, first=self.config.retry_backoff_s)

    # -- dead letters -------------------------------------------------------------

    def _dead_letter(
        self, record: Any, reason: str, error: BaseException | str, attempts: int
    ) -> bool:
        error_name = error if isinstance(error, str) else type(error).__name__
        headers = [
            *(record.headers or []),
            (DLQ_REASON, reason[:4000].encode()),
            (DLQ_ERROR, error_name.encode()),
            (DLQ_ATTEMPTS, b"%d" % attempts),
            (DLQ_SOURCE_TOPIC, record.topic.encode()),
            (DLQ_SOURCE_PARTITION, b"%d" % record.partition),
            (DLQ_SOURCE_OFFSET, b"%d" % record.offset),
            (DLQ_GROUP, self.group.encode()),
            (DLQ_FAILED_AT, datetime.now(UTC).isoformat().encode()),
        ]
        value = record.value if record.value is not None else b""
        backoff = self._backoff()
        while True:
            try:
                producer = self._dlq()
                producer.send(
                    self.config.dead_letter_topic, key=record.key, value=value, headers=headers
                ).get(timeout=30)
                break
            except Exception as exc:
                # Until the dead letter is stored the offset stays uncommitted: the
                # event is not lost, the partition just waits.
                self._close_dlq_producer()
                if not self._dlq_failing:
                    log.warning(
                        "subscriber %s: cannot write to dead-letter topic %s (%s); retrying",
                        self.group,
                        self.config.dead_letter_topic,
                        exc,
                    )
                    self._dlq_failing = True
                if self._stop.wait(backoff.next()):
                    return False
        self._dlq_failing = False
        self.stats.dead_lettered += 1
        log.warning(
            "subscriber %s: dead-lettered %s[%d]@%d to %s: %s",
            self.group,
            record.topic,
            record.partition,
            record.offset,
            self.config.dead_letter_topic,
            reason,
        )
        return True

    def _dlq(self) -> Any:
        if self._dlq_producer is None:
            from kafka import KafkaProducer

            kwargs = self.kafka.client_kwargs()
            self._dlq_producer = connect_or_fail(
                self.kafka,
                lambda: KafkaProducer(
                    **kwargs, acks="all", enable_idempotence=True, allow_auto_create_topics=False
                ),
                what="Kafka (dead-letter producer)",
                cancel=self._stop,
            )
        return self._dlq_producer

    def _close_dlq_producer(self) -> None:
        producer, self._dlq_producer = self._dlq_producer, None
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception:  # a broken producer may fail to close; it is discarded anyway
                pass


__all__ = [
    "DeadLetter",
    "Handler",
    "KafkaUnavailable",
    "Subscriber",
    "SubscriberConfig",
    "SubscriberStats",
]


def _tenant_of(record: Any) -> str | None:
    """The message's `tenant` header (a hosted deployment's tenant), if it has one."""
    for name, value in record.headers or ():
        if name == "tenant" and value:
            return bytes(value).decode("utf-8", "replace")
    return None
