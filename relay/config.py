"""What a relay is told: topic, tracking name, batch size and Kafka producer tuning."""

from __future__ import annotations

from dataclasses import dataclass

from consumers.kafka_config import DEFAULT_TOPIC
from ledger.backoff import MAX_BACKOFF_S

DEFAULT_BATCH_SIZE = 1000
DEFAULT_PARTITIONS = 6
# Read batches sent and not yet acknowledged. librdkafka leaves the relay's thread
# idle while the broker acknowledges, so more batches in flight keep it reading;
# 4 measured ahead of 2 (noisy runs, docs/performance.md), and bound what waits in
# the producer's memory to 4 x MAX_PENDING_BYTES.
DEFAULT_BATCHES_IN_FLIGHT = 4

# Producer defaults, chosen from measurements against the test broker (acks=all,
# idempotent, keyed ~470-byte events; docs/performance.md): lz4 cuts the
# bytes a batch takes on the wire and in the broker's log several times over at
# little CPU, and 1 MiB batches (counted before compression) let one request carry
# a few thousand events. A longer linger (50 ms), smaller batches (256 KiB) and
# fewer or more rows a read (250, 5,000) measured within the noise: the relay
# sends whole read batches at once, so batches fill without waiting.
DEFAULT_COMPRESSION = "lz4"
DEFAULT_BATCH_BYTES = 1024 * 1024
DEFAULT_LINGER_MS = 5
# Five is the most an idempotent producer keeps in order per partition while
# retrying; more would give up per-customer order.
MAX_IN_FLIGHT = 5


@dataclass
class RelayConfig:
    """How one relay runs: the topic and the tracking row it resumes from, read batch
    size, follow-mode polling, back-off, and the Kafka producer's tuning (defaults
    measured above)."""

    topic: str = DEFAULT_TOPIC
    # Tracking row name; defaults to the topic, so relaying to a second topic starts
    # that topic from the beginning.
    name: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    batches_in_flight: int = DEFAULT_BATCHES_IN_FLIGHT
    partitions: int = DEFAULT_PARTITIONS
    # -1: the cluster's default (managed clusters want 3, a dev broker has 1).
    replication_factor: int = -1
    # Follow mode: on PostgreSQL a NOTIFY wakes the relay at once and this is only the
    # fallback; SQLite has no notifications and is polled at this interval.
    poll_interval_s: float = 1.0
    sqlite_poll_interval_s: float = 0.02
    delivery_timeout_s: float = 30.0
    max_backoff_s: float = MAX_BACKOFF_S
    linger_ms: int = DEFAULT_LINGER_MS
    compression: str | None = DEFAULT_COMPRESSION  # None: uncompressed
    batch_bytes: int = DEFAULT_BATCH_BYTES
    # Above batch_bytes: one uncompressed full batch fits in one request.
    max_request_size: int = 2 * 1024 * 1024
    # The tenant whose store this relay publishes (None: a single-ledger deployment):
    # its messages are keyed `TENANT/CUSTOMER_ID` and carry a `tenant` header.
    tenant: str | None = None
    # While another relay holds this one's lock (PostgreSQL): wait as a standby
    # (True), or end the pass at once and try again later (a tenant worker).
    standby: bool = True
    # Connect to Kafka when the relay starts (True), or only once it has events to
    # send (a tenant worker: a caught-up tenant then costs no producer, whose
    # idempotent set-up takes about half a second).
    connect_at_start: bool = True

    @property
    def tracking_name(self) -> str:
        return self.name or self.topic
