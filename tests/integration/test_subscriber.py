"""The subscriber kit against a real broker: order, de-duplication, commits after
success, dead letters, foreign messages, and the example service's clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cli.main import ledger
from consumers.kafka_config import KafkaSettings
from consumers.kafka_connect import KafkaUnavailable
from consumers.kafka_topics import ensure_topic
from consumers.last_contact import LastContact, last_contact_of
from consumers.seen_store import InMemorySeenStore, PostgresSeenStore, SeenStore
from consumers.subscriber import DeadLetter, Subscriber, SubscriberConfig
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.events import RecordedEvent
from ledger.reading import iter_rows
from relay import Relay, RelayConfig, build_message
from tests.background import running_in_thread
from tests.factories import append_to_url as append
from tests.factories import event
from tests.relay_support import TOPIC, history, stored_positions, topic_reader
from tests.waiting import wait_for

if TYPE_CHECKING:
    from tests.kafka_broker import TansuBroker

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}


def relay_all(url: str, bootstrap: str, **config: Any) -> int:
    relay = Relay(
        parse_database_url(url), KafkaSettings(bootstrap=bootstrap), RelayConfig(**config)
    )
    return relay.run().published


def subscriber(
    handler: Callable[[RecordedEvent], None],
    bootstrap: str,
    group: str,
    seen: SeenStore | None = None,
    **config: Any,
) -> Subscriber:
    return Subscriber(
        handler,
        KafkaSettings(bootstrap=bootstrap),
        SubscriberConfig(group_id=group, poll_timeout_ms=200, **FAST_GROUP, **config),
        seen=seen,
    )


@contextmanager
def running(sub: Subscriber) -> Iterator[None]:
    with running_in_thread(lambda: sub.run(handle_signals=False), sub.stop, "subscriber", 20):
        yield


def committed_total(bootstrap: str, group: str, topic: str = TOPIC) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions)
    finally:
        consumer.close()


def test_every_event_once_in_order_despite_redelivery(
    pg_url: str, kafka_broker: TansuBroker
) -> None:
    customers = ["ann", "bob", "cleo"]
    append(pg_url, history(customers, 10))
    stored = stored_positions(pg_url)
    bootstrap = kafka_broker.bootstrap
    relay_all(pg_url, bootstrap)
    # Everything again, as after a relay crash: at-least-once means duplicates.
    relay_all(pg_url, bootstrap, name="replay")

    handled: dict[str, list[int]] = defaultdict(list)

    def handle(e: RecordedEvent) -> None:
        assert e.position is not None
        handled[e.customer_id].append(e.position)

    seen = PostgresSeenStore(pg_url)
    sub = subscriber(handle, bootstrap, "ordered", seen=seen)
    with running(sub):
        wait_for(lambda: sub.stats.processed == 2 * len(stored), every=0.05)
    seen.close()

    assert sub.stats.handled == len(stored) and sub.stats.duplicates == len(stored)
    assert sorted(p for ps in handled.values() for p in ps) == sorted(stored)
    for customer, positions in handled.items():
        assert positions == sorted(positions), customer
        assert {stored[p] for p in positions} == {customer}
    # Committed after handling: a restarted member resumes after the last event.
    assert committed_total(bootstrap, "ordered") == 2 * len(stored)


def test_failures_and_foreign_messages_go_to_the_dead_letter_topic(
    sqlite_url: str, kafka_broker: TansuBroker
) -> None:
    append(sqlite_url, history(["ann"], 3))
    with Connection(parse_database_url(sqlite_url)) as conn:
        good, poison, refused, *_ = [build_message(row) for row in iter_rows(conn)]
    settings = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    # One partition: the test relies on one order across all messages.
    ensure_topic(settings, TOPIC, partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    for key, value in [
        (good[0], good[1]),
        (b"foreign", b"not json at all"),
        (b"foreign", b'{"type": "note.added", "customer_id": "x"}'),
        (b"tombstone", None),
        (poison[0], poison[1]),
        (refused[0], refused[1]),
    ]:
        producer.send(TOPIC, key=key, value=value, headers=[("origin", b"test")])
    producer.flush()
    producer.close()
    poison_id = dict(poison[2])["event_id"].decode()
    refused_id = dict(refused[2])["event_id"].decode()

    calls: dict[str, int] = defaultdict(int)

    def handle(e: RecordedEvent) -> None:
        calls[str(e.event_id)] += 1
        if str(e.event_id) == poison_id:
            raise RuntimeError("boom")
        if str(e.event_id) == refused_id:
            raise DeadLetter("account closed")

    sub = subscriber(
        handle,
        kafka_broker.bootstrap,
        "dlq-test",
        seen=InMemorySeenStore(),
        max_attempts=3,
        retry_backoff_s=0.01,
    )
    with running(sub):
        wait_for(lambda: sub.stats.processed == 6, every=0.05)
    assert (sub.stats.handled, sub.stats.dead_lettered, sub.stats.invalid) == (1, 5, 3)
    assert calls[poison_id] == 3 and calls[refused_id] == 1
    assert committed_total(kafka_broker.bootstrap, "dlq-test") == 6

    with topic_reader(kafka_broker.bootstrap, "ledger.events.dlq") as reader:
        reader.read_until(lambda records: len(records) >= 5)
        dead = reader.records
    headers = [dict(r.headers) for r in dead]
    assert [r.key for r in dead] == [b"foreign", b"foreign", b"tombstone", poison[0], refused[0]]
    assert dead[0].value == b"not json at all" and dead[3].value == poison[1]
    assert all(h["origin"] == b"test" for h in headers)  # original headers kept
    assert headers[0]["dlq.reason"].startswith(b"not a valid ledger event: (json): malformed")
    assert b"data: Field required" in headers[1]["dlq.reason"]
    assert headers[2]["dlq.reason"] == b"empty message value"
    assert headers[3]["dlq.reason"] == b"handler failed 3 times, last: RuntimeError: boom"
    assert (headers[3]["dlq.attempts"], headers[3]["dlq.error"]) == (b"3", b"RuntimeError")
    assert headers[4]["dlq.reason"] == b"account closed" and headers[4]["dlq.attempts"] == b"1"
    assert headers[3]["dlq.source_topic"] == TOPIC.encode()
    assert headers[3]["dlq.source_offset"] == b"4"
    assert headers[3]["dlq.consumer_group"] == b"dlq-test"


def contact_history() -> list[dict[str, Any]]:
    """Contact events at distinct times, some customers' latest not last in order."""
    t = "2026-10-0{day}T{hour:02d}:00:00+00:00"
    events = [event("customer.created", c, {"card": {}}) for c in ("ann", "bob")]
    for day, hour, c, typ, data in [
        (1, 9, "ann", "call.logged", {"call_id": "k1", "direction": "inbound",
                                     "result": "answered", "duration_s": 5}),
        (3, 9, "ann", "email.sent", {"message_id": "m1", "subject": "hi"}),
        (2, 9, "ann", "sms.sent", {"message_id": "s1"}),
        (1, 8, "bob", "chat.started", {"dialog_id": "d1", "channel": "whatsapp"}),
        (4, 8, "bob", "chat.message", {"dialog_id": "d1", "message_id": "x",
                                      "direction": "inbound"}),
        (2, 8, "bob", "call.logged", {"call_id": "k2", "direction": "outbound",
                                     "result": "missed", "duration_s": 0}),
        (5, 8, "bob", "note.added", {"note_id": "n1", "text": "not a contact"}),
    ]:  # fmt: skip
        events.append(event(typ, c, data, occurred_at=t.format(day=day, hour=hour)))
    return events


EXPECTED = {
    "ann": {
        "call": "2026-10-01T09:00:00+00:00",
        "email": "2026-10-03T09:00:00+00:00",
        "sms": "2026-10-02T09:00:00+00:00",
        "chat": None,
        "last_contact_at": "2026-10-03T09:00:00+00:00",
        "channel": "email",
    },
    "bob": {
        "call": "2026-10-02T08:00:00+00:00",
        "email": None,
        "sms": None,
        "chat": "2026-10-04T08:00:00+00:00",
        "last_contact_at": "2026-10-04T08:00:00+00:00",
        "channel": "chat",
    },
}


def without_event_id(row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None
    return {k: v for k, v in row.items() if k != "event_id"}


def test_last_contact_is_idempotent_and_order_free(store_url: str, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    append(source, contact_history())
    with Connection(parse_database_url(source)) as conn:
        events = [row.decode() for row in iter_rows(conn)]
    with Connection(parse_database_url(store_url)) as conn:
        handle = LastContact(conn)
        # Newest first, then everything again: what redelivery after a reset does.
        for e in [*reversed(events), *events]:
            handle(e)
        for customer, expected in EXPECTED.items():
            assert without_event_id(last_contact_of(conn, customer)) == expected


def test_example_service_stops_cleanly_on_sigterm(
    pg_url: str, kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    append(pg_url, contact_history())
    total = relay_all(pg_url, kafka_broker.bootstrap)
    log = tmp_path / "last_contact.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consumers.last_contact",
                "--db",
                pg_url,
                "--group",
                "lc",
                "--session-timeout-ms",
                "6000",
            ],
            env={**os.environ, "LEDGER_KAFKA_BOOTSTRAP": kafka_broker.bootstrap},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        # Offsets are committed only after the handler succeeded: once they cover
        # every message, the table must be complete.
        wait_for(lambda: committed_total(kafka_broker.bootstrap, "lc") == total, every=0.05)
        with Connection(parse_database_url(pg_url)) as conn:
            for customer, expected in EXPECTED.items():
                assert without_event_id(last_contact_of(conn, customer)) == expected
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert f"stopped; handled {total}, duplicates 0, dead-lettered 0" in text, text


def test_unreachable_kafka_fails_fast(pg_url: str) -> None:
    with socket_closed_port() as port:
        settings = KafkaSettings(bootstrap=f"127.0.0.1:{port}", connect_timeout_s=1)
        sub = Subscriber(lambda e: None, settings, SubscriberConfig(group_id="g"))
        started = time.monotonic()
        with pytest.raises(KafkaUnavailable, match="not reachable within 1s"):
            sub.run(handle_signals=False)
        assert time.monotonic() - started < 6

        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "consumers.last_contact",
                "--db",
                pg_url,
                "--bootstrap",
                f"127.0.0.1:{port}",
                "--connect-timeout",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Kafka at"), result.stderr
    assert "not reachable within 1s" in lines[0]


@contextmanager
def socket_closed_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    yield port


def test_in_memory_seen_store_is_bounded() -> None:
    store = InMemorySeenStore(max_entries=2)
    assert not store.seen("g", "e1")
    store.mark("g", "e1")
    assert store.seen("g", "e1") and not store.seen("other-group", "e1")
    store.mark("g", "e2")
    store.mark("g", "e3")
    assert not store.seen("g", "e1") and store.seen("g", "e3")


def test_database_seen_store(store_url: str) -> None:
    store = PostgresSeenStore(store_url)
    try:
        assert not store.seen("g", "e1")
        store.mark("g", "e1")
        store.mark("g", "e1")  # idempotent
        assert store.seen("g", "e1") and not store.seen("other-group", "e1")
        store.mark("g", "e2")
        assert store.prune("g", timedelta(hours=1)) == 0
        assert store.prune("g", timedelta(seconds=-1)) == 2
        assert not store.seen("g", "e1")
    finally:
        store.close()
    # A second instance of the group (another process) shares what it saw.
    first, second = PostgresSeenStore(store_url), PostgresSeenStore(store_url)
    first.mark("g", "e9")
    assert second.seen("g", "e9")
    first.close()
    second.close()


def test_relay_and_subscriber_carry_an_erasure_and_last_contact_forgets(
    pg_url: str, kafka_broker: TansuBroker
) -> None:
    """The relay publishes customer.erased, and events relayed after the erasure
    (a `relay reset`) carry "[erased]", never the plaintext; the subscriber kit
    hands customer.erased to its handler, and last_contact deletes the customer."""
    append(
        pg_url,
        [
            event("customer.created", "ann", {"card": {"name": "ZQX Ann"}}),
            event("sms.sent", "ann", {"message_id": "s1", "to": "+1", "text": "ZQX hi"}),
            event("customer.created", "bob", {"card": {"name": "Bob"}}),
            event("sms.sent", "bob", {"message_id": "s2", "to": "+2", "text": "hello"}),
        ],
    )
    bootstrap = kafka_broker.bootstrap
    runner = CliRunner()
    erased = runner.invoke(
        ledger, ["--db", pg_url, "customers", "erase", "ann", "--reason", "art. 17", "--yes"]
    )
    assert erased.exit_code == 0, erased.output
    assert relay_all(pg_url, bootstrap) == 5
    with topic_reader(bootstrap) as reader:
        reader.read_until(lambda records: len(records) >= 5)
        values = [bytes(r.value).decode() for r in reader.records]
    assert any('"customer.erased"' in v for v in values)
    assert not any("ZQX" in v for v in values)

    with Connection(parse_database_url(pg_url)) as conn:
        handler = LastContact(conn)
        seen_types: list[str] = []

        def handle(e: RecordedEvent) -> None:
            seen_types.append(e.type)
            handler(e)

        sub = subscriber(handle, bootstrap, "forget")
        with running(sub):
            wait_for(lambda: sub.stats.handled == 5, every=0.05)
        assert seen_types.count("customer.erased") == 1
        assert last_contact_of(conn, "ann") is None
        assert last_contact_of(conn, "bob") is not None


def test_the_tenant_of_each_event_is_exposed_and_tenants_are_told_apart(
    pg_url: str, other_pg_url: str, sqlite_url: str, kafka_broker: TansuBroker
) -> None:
    # The same events (same event ids) in two tenants' stores and a single ledger.
    events = history(["ann", "bob"], 3)
    for url in (pg_url, other_pg_url, sqlite_url):
        append(url, events)
    bootstrap = kafka_broker.bootstrap
    relay_all(pg_url, bootstrap, tenant="shop-1")
    relay_all(other_pg_url, bootstrap, tenant="shop-2")
    relay_all(sqlite_url, bootstrap)

    handled: list[tuple[str | None, str, str]] = []

    def handle(e: RecordedEvent) -> None:
        handled.append((e.tenant, e.customer_id, str(e.event_id)))

    sub = subscriber(handle, bootstrap, "tenants", seen=InMemorySeenStore())
    with running(sub):
        wait_for(lambda: sub.stats.processed == 3 * len(events), every=0.05)
    # Nothing of one tenant is taken for a redelivery of another's.
    assert sub.stats.duplicates == 0 and sub.stats.handled == 3 * len(events)
    ids = sorted(str(e["event_id"]) for e in events)
    for tenant in ("shop-1", "shop-2", None):
        assert sorted(i for t, _, i in handled if t == tenant) == ids, tenant
