"""Creating the ledger's topics with the partition count we choose."""

from __future__ import annotations

import logging
from typing import Any

from consumers.kafka_config import KafkaSettings

_topic_log = logging.getLogger("ledger.kafka")


def ensure_topic(
    settings: KafkaSettings, topic: str, partitions: int, replication_factor: int = -1
) -> bool:
    """Create `topic` if missing; True when this call created it.

    Explicit creation, because a broker's auto-creation picks its own partition
    count. A principal without the right to create topics is fine as long as the
    topic exists: producing to it then says so."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import AuthorizationError, TopicAlreadyExistsError

    admin = KafkaAdminClient(
        **settings.client_kwargs(), request_timeout_ms=int(settings.connect_timeout_s * 1000)
    )
    try:
        if topic in admin.list_topics():
            _warn_partitions(admin, topic, partitions)
            return False
        try:
            admin.create_topics([NewTopic(topic, partitions, replication_factor)])
        except TopicAlreadyExistsError:
            return False
        except AuthorizationError as exc:
            _topic_log.warning("cannot create Kafka topic %s (%s); assuming it exists", topic, exc)
            return False
        _topic_log.info(
            "created Kafka topic %s with %d partition%s", topic, partitions, "s"[: partitions - 1]
        )
        return True
    finally:
        admin.close()


def _warn_partitions(admin: Any, topic: str, wanted: int) -> None:
    # Someone else made it: an operator, or a broker that auto-creates topics on any
    # client's request (Tansu does, even when asked not to) after coming back empty.
    try:
        [described] = admin.describe_topics([topic])
        count = len(described["partitions"])
    except Exception:  # describing is only for this warning; never fail over it
        return
    if count != wanted:
        _topic_log.info(
            "Kafka topic %s exists with %d partitions (%d applies only when creating it)",
            topic,
            count,
            wanted,
        )
