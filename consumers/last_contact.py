"""Example downstream service: each customer's last call, email, SMS and chat.

    python -m consumers.last_contact --db postgresql://.../crm --group last-contact

Keeps a `last_contact` table (PostgreSQL, or SQLite for a single node) with one row
per customer: when they were last called, emailed, texted and chatted with, and
which of those was the latest contact. Built on the subscriber kit
(`consumers.subscriber`): consumer group, commit after success, de-duplication by
event id, dead-letter topic, clean shutdown on SIGTERM.

The upsert keeps the later timestamp, so applying an event twice or out of order
changes nothing: the table is correct under at-least-once delivery even without
the seen-store, which here only saves work.

Merged customers (docs/kafka.md, "Merged customers"): the rows stay per customer
id, as the events were sent, and a table `last_contact_merges` maps each absorbed
customer to the priority customer it stands merged into, as of the ledger position
of the latest merge event about it. `last_contact_of` folds at read time: a
priority customer's last contact is the latest over itself and the customers
merged into it, so after an undo each customer's own row answers again. The map
keeps the latest position per absorbed customer, so the merge events' arrival
order across partitions does not matter, nor does applying one twice.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import click

from consumers.kafka_config import DEFAULT_DLQ_TOPIC, DEFAULT_TOPIC, TOPIC_ENV
from consumers.kafka_connect import KafkaUnavailable
from consumers.kafka_options import kafka_options, pop_kafka_options
from consumers.seen_store import PostgresSeenStore
from consumers.subscriber import DeadLetter, Subscriber, SubscriberConfig
from ledger.config import ConfigError, parse_database_url
from ledger.db import Connection
from ledger.errors import DatabaseUnavailable
from ledger.events import RecordedEvent
from ledger.events.customer import (
    CustomerAbsorbed,
    CustomerErased,
    CustomerMerged,
    CustomerReleased,
    CustomerUnmerged,
)

TABLE = "last_contact"
MERGES_TABLE = "last_contact_merges"

# Which events count as contacting the customer, and as what.
CHANNELS: dict[str, str] = {
    "call.logged": "call",
    "email.sent": "email",
    "sms.sent": "sms",
    "chat.started": "chat",
    "chat.message": "chat",
}


def ensure_schema(conn: Connection) -> None:
    """Create the tables if missing: `last_contact`, one row per customer id, a timestamp
    per channel and the latest contact overall; `last_contact_merges`, where each
    absorbed customer stands."""
    ts = "TEXT" if conn.kind == "sqlite" else "timestamptz"
    # Serialised across processes: the members of a group start together.
    with conn.schema_transaction():
        _create_tables(conn, ts)


def _create_tables(conn: Connection, ts: str) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "customer_id TEXT PRIMARY KEY, "
        f"last_call_at {ts}, last_email_at {ts}, last_sms_at {ts}, last_chat_at {ts}, "
        f"last_contact_at {ts} NOT NULL, last_contact_channel TEXT NOT NULL, "
        f"last_event_id TEXT NOT NULL, updated_at {ts} NOT NULL)"
    )
    # One row per customer a merge event named as absorbed: the priority customer it
    # stands merged into (NULL once released), as of the ledger position of the
    # latest merge event about it. Ids only.
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {MERGES_TABLE} ("
        "absorbed_id TEXT PRIMARY KEY, priority_id TEXT, position BIGINT NOT NULL)"
    )
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS {MERGES_TABLE}_by_priority ON {MERGES_TABLE} (priority_id)"
    )


class LastContact:
    """The handler: one idempotent upsert per contact event under the id it was sent
    under, one per absorbed customer a merge event names, a delete on erasure, and
    nothing for the rest."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        ensure_schema(conn)
        if conn.kind == "sqlite":
            # SQLite's scalar MAX() is NULL when either side is; timestamps are
            # stored as UTC ISO strings, which sort like the instants they name.
            later = "MAX(COALESCE({a}, {b}), COALESCE({b}, {a}))"
        else:
            later = "GREATEST({a}, {b})"  # ignores NULLs
        newer = (
            f"{TABLE}.last_contact_at IS NULL OR excluded.last_contact_at > {TABLE}.last_contact_at"
        )
        self._upserts = {
            channel: (
                f"INSERT INTO {TABLE} (customer_id, last_{channel}_at, last_contact_at, "
                "last_contact_channel, last_event_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (customer_id) DO UPDATE SET "
                f"last_{channel}_at = "
                + later.format(a=f"{TABLE}.last_{channel}_at", b=f"excluded.last_{channel}_at")
                + ", last_contact_channel = CASE WHEN "
                f"{newer} THEN excluded.last_contact_channel ELSE {TABLE}.last_contact_channel END"
                ", last_event_id = CASE WHEN "
                f"{newer} THEN excluded.last_event_id ELSE {TABLE}.last_event_id END"
                ", last_contact_at = "
                + later.format(a=f"{TABLE}.last_contact_at", b="excluded.last_contact_at")
                + ", updated_at = excluded.updated_at"
            )
            for channel in set(CHANNELS.values())
        }
        # The latest merge event about an absorbed customer decides where it stands:
        # the merged / absorbed pair and the unmerged / released pair land on two
        # partitions and may come in any order, or twice.
        self._link = (
            f"INSERT INTO {MERGES_TABLE} (absorbed_id, priority_id, position) VALUES (?, ?, ?) "
            "ON CONFLICT (absorbed_id) DO UPDATE SET priority_id = excluded.priority_id, "
            f"position = excluded.position WHERE excluded.position > {MERGES_TABLE}.position"
        )

    def __call__(self, event: RecordedEvent) -> None:
        data = event.data
        if isinstance(data, CustomerErased):
            # The customer asked to be forgotten: this service forgets it too. (A
            # merged customer is erased with its whole merge: each gets this event.)
            self.conn.execute(f"DELETE FROM {TABLE} WHERE customer_id = ?", (event.customer_id,))
            return
        if isinstance(data, CustomerMerged):
            self._links([(a, event.customer_id) for a in data.absorbed], event)
            return
        if isinstance(data, CustomerAbsorbed):
            self._links([(event.customer_id, data.into)], event)
            return
        if isinstance(data, CustomerUnmerged):
            self._links([(data.released, None)], event)
            return
        if isinstance(data, CustomerReleased):
            self._links([(event.customer_id, None)], event)
            return
        channel = CHANNELS.get(event.type)
        if channel is None:
            return
        when = self._timestamp(event.occurred_at)
        self.conn.execute(
            self._upserts[channel],
            (
                event.customer_id,
                when,
                when,
                channel,
                str(event.event_id),
                self._timestamp(datetime.now(UTC)),
            ),
        )

    def _links(self, links: list[tuple[str, str | None]], event: RecordedEvent) -> None:
        """Record where each absorbed customer stands (a priority id, or None once
        released) as of this event's position, unless a later event said otherwise."""
        if event.position is None:
            raise DeadLetter(f"{event.type} without a ledger position: cannot order it")
        with self.conn.transaction():
            self.conn.executemany(
                self._link, [(absorbed, priority, event.position) for absorbed, priority in links]
            )

    def _timestamp(self, value: datetime) -> Any:
        value = value.astimezone(UTC)
        return value.isoformat(timespec="microseconds") if self.conn.kind == "sqlite" else value


def merged_into(conn: Connection, customer_id: str) -> str | None:
    """The priority customer `customer_id` stands merged into, or None."""
    row = conn.fetchone(
        f"SELECT priority_id FROM {MERGES_TABLE} WHERE absorbed_id = ?", (customer_id,)
    )
    return None if row is None or row[0] is None else str(row[0])


def members(conn: Connection, customer_id: str) -> tuple[str, ...]:
    """The customers whose rows make up `customer_id`'s last contact: itself, then
    the customers standing merged into it, by id."""
    rows = conn.fetchall(
        f"SELECT absorbed_id FROM {MERGES_TABLE} WHERE priority_id = ? ORDER BY absorbed_id",
        (customer_id,),
    )
    return (customer_id, *(str(r[0]) for r in rows))


_COLUMNS = (
    "last_call_at, last_email_at, last_sms_at, last_chat_at, last_contact_at, "
    "last_contact_channel, last_event_id"
)


def last_contact_of(
    conn: Connection, customer_id: str, *, fold: bool = True
) -> dict[str, Any] | None:
    """A customer's last contacts, timestamps as ISO strings; None when there are none.

    With `fold` (the default) merges count: a customer merged into another answers
    for its priority customer, and a priority customer's value is the latest over
    itself and the customers standing merged into it, per channel and overall.
    `fold=False`: the customer's own row, as if there were no merges."""
    if fold:
        priority = merged_into(conn, customer_id) or customer_id
        ids = members(conn, priority)
    else:
        ids = (customer_id,)
    marks = ", ".join("?" * len(ids))
    rows = conn.fetchall(f"SELECT {_COLUMNS} FROM {TABLE} WHERE customer_id IN ({marks})", ids)
    if not rows:
        return None
    # Per channel the latest of any member's; overall the member row whose latest
    # contact is latest (ties: the greater event id, so the answer is one).
    row: tuple[Any, ...] = (
        *(max((r[i] for r in rows if r[i] is not None), default=None) for i in range(4)),
        *max(rows, key=lambda r: (r[4], r[6]))[4:],
    )

    def iso(v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, str):
            v = datetime.fromisoformat(v)
        return str(v.astimezone(UTC).isoformat())

    return {
        "call": iso(row[0]),
        "email": iso(row[1]),
        "sms": iso(row[2]),
        "chat": iso(row[3]),
        "last_contact_at": iso(row[4]),
        "channel": row[5],
        "event_id": row[6],
    }


@click.command()
@click.option(
    "--db",
    "db_url",
    envvar="LAST_CONTACT_DATABASE_URL",
    required=True,
    metavar="URL",
    help="This service's own database: postgresql://... or sqlite:///PATH "
    "[env LAST_CONTACT_DATABASE_URL].",
)
@click.option("--group", default="last-contact", show_default=True, help="Kafka consumer group.")
@click.option(
    "--topic",
    envvar=TOPIC_ENV,
    default=DEFAULT_TOPIC,
    show_default=True,
    help="[env LEDGER_KAFKA_TOPIC]",
)
@click.option("--dead-letter-topic", default=DEFAULT_DLQ_TOPIC, show_default=True)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    help="Handler tries per event before it is dead-lettered.",
)
@click.option("--session-timeout-ms", type=click.IntRange(6000), default=10_000, show_default=True)
@kafka_options
def main(
    db_url: str,
    group: str,
    topic: str,
    dead_letter_topic: str,
    max_attempts: int,
    session_timeout_ms: int,
    **kafka: Any,
) -> None:
    """Keep each customer's last call, email, SMS and chat in a `last_contact` table."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # kafka-python's own INFO lines are connection chatter; ours say what matters.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        settings = pop_kafka_options(kafka)
        conn = Connection(parse_database_url(db_url))
    except (ConfigError, DatabaseUnavailable) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 3)
    try:
        subscriber = Subscriber(
            LastContact(conn),
            settings,
            SubscriberConfig(
                group_id=group,
                topic=topic,
                dead_letter_topic=dead_letter_topic,
                max_attempts=max_attempts,
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(1000, session_timeout_ms // 3),
            ),
            seen=PostgresSeenStore(conn),
        )
        subscriber.run()
    except KafkaUnavailable as exc:
        click.echo(f"error: {exc}; check --bootstrap and the SASL/SSL options", err=True)
        sys.exit(3)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
