"""The outbox relay against a real Kafka-protocol broker (Tansu) on both stores."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from consumers.kafka_config import KafkaSettings
from ledger.appending.appender import Appender
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.events import RecordedEvent, parse_recorded_json
from ledger.input import read_items
from ledger.reading import StoredRow, iter_rows
from relay import (
    Relay,
    RelayConfig,
    RelayFatal,
    RelayProgress,
    build_message,
    ensure_schema,
    relay_status,
)
from relay.tracking import try_relay_lock
from tests.background import running_in_thread
from tests.cli_runner import run_ledger
from tests.factories import append_to_url as append
from tests.factories import ndjson
from tests.relay_support import (
    TOPIC,
    assert_delivered_in_order,
    history,
    position_of,
    stored_positions,
    topic_reader,
)
from tests.waiting import wait_for

if TYPE_CHECKING:
    from tests.kafka_broker import TansuBroker


def make_relay(url: str, bootstrap: str, **config: Any) -> Relay:
    config.setdefault("delivery_timeout_s", 5.0)
    return Relay(parse_database_url(url), KafkaSettings(bootstrap=bootstrap), RelayConfig(**config))


@contextmanager
def following(relay: Relay) -> Iterator[threading.Thread]:
    with running_in_thread(lambda: relay.run(follow=True), relay.stop, "relay", 15) as thread:
        yield thread


@contextmanager
def positions_with_a_hole(app: LedgerApplication, gap: int) -> Iterator[None]:
    """The next append's positions start `gap` past the head.

    Our stores never leave holes themselves, but positions are only promised to be
    increasing; a reader must not assume +1. Bumps the write session's private
    counter, the one place positions are numbered."""
    recorder: Any = app.ledger_recorder
    original = recorder.write_session

    @contextmanager
    def gapped(**options: Any) -> Iterator[Any]:
        # A session that reads the head (the gap is added to it), whatever asked.
        with original() as session:
            session._last_position += gap
            yield session

    recorder.write_session = gapped
    try:
        yield
    finally:
        recorder.write_session = original


def test_publishes_every_event_keyed_with_headers_in_order(
    store_url: str, kafka_broker: TansuBroker
) -> None:
    customers = ["ann", "bob", "cleo", "dan"]
    append(store_url, history(customers, 10))
    app = LedgerApplication(parse_database_url(store_url))
    with positions_with_a_hole(app, 7):
        appender = Appender(app)
        report = appender.append(read_items(io.StringIO(ndjson(history(customers, 3, 10)))))
        appender.close()
    app.close()
    assert report.ok
    stored = stored_positions(store_url)
    assert len(stored) == 4 + 4 * 13
    assert report.first_position is not None and report.first_position - 8 in stored
    assert report.first_position - 1 not in stored  # the hole

    progress: list[RelayProgress] = []
    relay = make_relay(store_url, kafka_broker.bootstrap)
    relay.on_progress = progress.append
    result = relay.run()
    assert result.published == len(stored) and result.position == max(stored)
    assert progress[-1].state == "caught_up" and progress[-1].lag == 0

    with Connection(parse_database_url(store_url)) as conn:
        rows = {row.position: row for row in iter_rows(conn)}
        status = relay_status(conn, TOPIC)
    assert (status.position, status.head, status.lag) == (max(stored), max(stored), 0)

    with topic_reader(kafka_broker.bootstrap) as reader:
        assert len(reader.partitions) == 6  # created by the relay, not auto-created
        reader.read_until(lambda records: len(records) >= len(stored))
        reader.drain()
        records = reader.records
    assert len(records) == len(stored)  # nothing twice when nothing failed
    assert_delivered_in_order(records, stored)
    for r in records:
        row = rows[position_of(r)]
        event = parse_recorded_json(r.value)
        assert event == row.decode()
        assert (event.position, event.stream_id, event.stream_version) == (
            row.position,
            row.stream_id,
            row.stream_version,
        )
        assert r.key == event.customer_id.encode()
        assert dict(r.headers) == {
            "event_id": str(event.event_id).encode(),
            "type": event.type.encode(),
            "schema_version": str(event.schema_version).encode(),
            "position": str(row.position).encode(),
        }
    partitions_of: dict[bytes, set[int]] = {}
    for r in records:
        partitions_of.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions_of.values())

    # The position is tracked: a second run has nothing to send.
    again = make_relay(store_url, kafka_broker.bootstrap).run()
    assert again.published == 0


def test_follows_concurrent_writers(store_url: str, kafka_broker: TansuBroker) -> None:
    writers = [[f"w{w}-c{i}" for i in range(3)] for w in range(3)]
    append(store_url, history([c for cs in writers for c in cs], 0))
    relay = make_relay(store_url, kafka_broker.bootstrap, batch_size=50)
    with following(relay), topic_reader(kafka_broker.bootstrap) as reader:

        def write(customers: list[str]) -> None:
            for round_ in range(6):
                append(store_url, history(customers, 5, start=1 + round_ * 5), batch_size=7)

        threads = [threading.Thread(target=write, args=(cs,)) for cs in writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stored = stored_positions(store_url)
        assert len(stored) == 9 + 9 * 30
        reader.read_positions(set(stored))
        assert_delivered_in_order(reader.records, stored)


def test_build_message_reads_either_stored_layout() -> None:
    """The fast path reads the mapper's current layout; anything else (an older
    layout, escaped characters) goes through json.loads with the same result."""
    event = parse_recorded_json(
        json.dumps(
            {
                "event_id": str(uuid4()),
                "type": "note.added",
                "customer_id": 'Zoë "quoted"',
                "occurred_at": "2026-10-01T10:00:00+02:00",
                "actor": {"kind": "user", "id": "u-1"},
                "data": {"note_id": "n1", "text": "hi"},
                "recorded_at": "2026-10-01T08:00:01Z",
                "schema_version": 1,
            }
        )
    )
    stream = uuid4()
    old_layout = event.model_dump_json(exclude={"position", "stream_id", "stream_version"})
    escaped = StoredRow(5, stream, 2, "note.added", old_layout.encode())
    key, value, headers = build_message(escaped)
    assert key == 'Zoë "quoted"'.encode()
    parsed = parse_recorded_json(value)
    assert parsed.position == 5 and parsed.stream_id == stream and parsed.stream_version == 2
    assert parsed.model_dump(exclude={"position", "stream_id", "stream_version"}) == (
        event.model_dump(exclude={"position", "stream_id", "stream_version"})
    )
    assert dict(headers)["event_id"] == str(event.event_id).encode()
    assert dict(headers)["schema_version"] == b"1"

    with pytest.raises(RelayFatal, match="position 9 is not a plain JSON envelope"):
        build_message(StoredRow(9, stream, 1, "note.added", b"\x00\x01 encrypted"))


def test_current_layout_takes_the_fast_path(sqlite_url: str) -> None:
    from relay.messages import _FAST_HEAD

    append(sqlite_url, history(["ann"], 3))
    with Connection(parse_database_url(sqlite_url)) as conn:
        rows = list(iter_rows(conn))
    # Not a correctness matter (the slow path is equivalent) but the throughput goal
    # rests on it: if the mapper's layout changes, update the pattern.
    assert all(_FAST_HEAD.match(r.state) for r in rows)
    for r in rows:
        key, value, _ = build_message(r)
        decoded: RecordedEvent = parse_recorded_json(value)
        assert decoded == r.decode() and key == decoded.customer_id.encode()


def test_second_relay_stands_by_until_the_first_stops(
    pg_url: str, kafka_broker: TansuBroker
) -> None:
    append(pg_url, history(["ann"], 2))
    first = make_relay(pg_url, kafka_broker.bootstrap)
    states: list[str] = []
    second = make_relay(pg_url, kafka_broker.bootstrap)
    second.on_progress = lambda p: states.append(p.state)
    with following(first):
        wait_for(lambda: relay_position(pg_url) == 3, 15, every=0.05)
        # A running relay keeps its position in memory: moving it underneath is refused.
        reset = run_ledger("relay", "reset", "--to", "0", "--yes", db=pg_url)
        assert reset.returncode == 1 and "is running" in reset.stderr, reset.stderr
        with following(second):
            wait_for(lambda: "waiting_for_lock" in states, 15, every=0.05)
            first.stop()
            wait_for(lambda: "caught_up" in states, 10, every=0.05)
            append(pg_url, history(["ann"], 1, start=2))
            wait_for(lambda: relay_position(pg_url) == 4, 15, every=0.05)


def test_one_relay_per_name_and_ledger_not_per_database(pg_url: str, other_pg_url: str) -> None:
    # Two ledgers (schemas) in one database each run their relay of the same name.
    here, again, there = (Connection(parse_database_url(u)) for u in (pg_url, pg_url, other_pg_url))
    try:
        assert try_relay_lock(here, TOPIC)
        assert not try_relay_lock(again, TOPIC)
        assert try_relay_lock(there, TOPIC)
    finally:
        for conn in (here, again, there):
            conn.close()


def relay_position(url: str) -> int:
    with Connection(parse_database_url(url)) as conn:
        ensure_schema(conn)  # the relay under test may not have got that far yet
        return relay_status(conn, TOPIC).position
