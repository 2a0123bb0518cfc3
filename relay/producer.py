"""The relay's Kafka producer: confluent-kafka (librdkafka, compiled) configured for
ordered, acknowledged delivery, and how its errors read.

librdkafka does a message's encoding, batching, compression and checksums in C on
threads of its own, outside the GIL: the relay's one Python thread only reads rows,
builds messages and hands them over (about 3 µs a message, against about 40 µs in
kafka-python). Topics are still created with kafka-python's admin client
(`consumers.kafka_topics`), which is also what proves the brokers reachable and the
login good before a producer is made.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, Producer

from consumers.kafka_config import KafkaSettings
from relay.config import MAX_IN_FLIGHT, RelayConfig

log = logging.getLogger("ledger.kafka.librdkafka")

# Errors no amount of retrying fixes: the event or the topic must change, or the
# principal's rights. Anything else (timeouts, a lost topic, a broker that came back
# empty, librdkafka's own fatal idempotence errors) means a new producer.
FATAL_CODES = frozenset(
    {
        # Also what produce() raises for a message over message.max.bytes.
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)


def producer_config(kafka: KafkaSettings, config: RelayConfig) -> dict[str, Any]:
    """librdkafka properties for the relay's producer: the connection from
    `KafkaSettings.librdkafka_config()`, then delivery (idempotent, acks=all, at
    most MAX_IN_FLIGHT requests in flight: each partition keeps its order through
    retries), batching and compression from `RelayConfig`, and murmur2 partitioning
    (the partition kafka-python's and Java's default partitioners pick for a key)."""
    delivery_ms = int(config.delivery_timeout_s * 1000)
    conf = kafka.librdkafka_config()
    conf.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "max.in.flight.requests.per.connection": MAX_IN_FLIGHT,
            "linger.ms": config.linger_ms,
            "batch.size": config.batch_bytes,
            "compression.type": config.compression or "none",
            "message.max.bytes": config.max_request_size,
            # A message not acknowledged by then fails with _MSG_TIMED_OUT.
            "delivery.timeout.ms": delivery_ms,
            "request.timeout.ms": max(1000, min(30_000, delivery_ms - config.linger_ms - 100)),
            # librdkafka's default for keyed messages is CRC32 (consistent_random).
            "partitioner": "murmur2_random",
            # A missing topic (a broker that came back empty) must fail, and be
            # recreated with our partition count, not auto-created with the broker's.
            "allow.auto.create.topics": False,
        }
    )
    return conf


class _QuietLog:
    """librdkafka's log lines (one per failed connection attempt) at DEBUG: the relay
    logs one line per change of state itself, with the reason."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        log.debug(fmt, *args)


def make_producer(conf: dict[str, Any], on_error: Any) -> Producer:
    """A producer with `conf`; librdkafka's errors (served by `poll`) go to `on_error`
    and its log to DEBUG. Raises KafkaException on a property librdkafka refuses."""
    return Producer({**conf, "error_cb": on_error, "logger": _QuietLog()})


def describe_error(error: KafkaError, last: KafkaError | None = None) -> str:
    """One line for a log: librdkafka's text ("Local: Message timed out"), and the
    last connection error seen (a timeout alone does not say why)."""
    line = error.str() or error.name()
    if last is not None and last.code() != error.code():
        line += f"; last error: {last.str()}"
    return line


def is_fatal(error: KafkaError) -> bool:
    """Whether retrying with a new producer cannot help (see FATAL_CODES)."""
    return error.code() in FATAL_CODES
