"""The outbox relay: every stored event, in position order, onto a Kafka topic.

Delivery is at-least-once and never out of order per customer:

- rows are read with `position > tracked` in position order; positions are assigned
  under the events table's write lock, so nothing committed later can appear below
  the tracked position, and holes are simply skipped;
- each message is keyed by `customer_id`, so one customer's events share a partition
  (murmur2, as kafka-python and Java pick it); the producer (confluent-kafka, i.e.
  librdkafka) is idempotent with acks=all and at most 5 requests in flight, which
  keeps a partition's order even when it retries;
- the tracked position moves only after librdkafka's delivery reports confirmed every
  message up to it. On any failure the producer is thrown away (an idempotent producer that
  lived through a broker restart never recovers) and everything after the
  acknowledged position is sent again.

Modules: `config` (what a relay is told), `tracking` (the `relay_tracking` table,
the one-relay-per-name lock, status), `messages` (a stored row as a Kafka
message; pure), `partitioner` (where a key's messages go, as kafka-python's default
partitioner puts them: the reference the producer is tested against), `producer`
(the librdkafka producer's settings and errors), `publisher` (the producer and the
batches in flight on it),
`position` (records the acknowledged position from a thread of its own), `loop`
(the relay itself: read, publish, follow, recover).
"""

from relay.config import RelayConfig
from relay.errors import RelayFatal
from relay.loop import Relay, RelayProgress, RelayResult
from relay.messages import build_message
from relay.tracking import ensure_schema, relay_status

__all__ = [
    "Relay",
    "RelayConfig",
    "RelayFatal",
    "RelayProgress",
    "RelayResult",
    "build_message",
    "ensure_schema",
    "relay_status",
]
