"""Relay throughput and end-to-end latency against a real Kafka-protocol broker.

    .venv/bin/python -m bench.relay [--events 100000] [--db URL] [--bootstrap HOST:PORT]

1. Stores N generated events (batched appends: the rate a writer can sustain),
   then relays them (`Relay.run()`, the code path of `ledger relay run`, which
   publishes with confluent-kafka) to a fresh topic and, in the same run, produces
   the very same keys, values and headers with two bare producers to fresh topics:
   confluent-kafka with the relay's own producer settings, and kafka-python
   configured alike (acks=all, idempotent, same batching; the relay's producer
   before). Prints msgs/s for each, the relay's rate over the bare confluent-kafka
   producer's, and the relay's rate over the append rate (goal: 1.5 or better, 2 the
   stretch, or the relay's lag grows under sustained load). Each side runs
   `--repeat` times, alternating; the medians are compared.
2. Follows: `ledger relay run --follow` (a separate process, as deployed) and a
   consumer on its topic while another process appends events one at a time;
   prints the append-to-consumer latency percentiles (goal: p99 under 200 ms).

Without `--bootstrap` it starts a Tansu broker on loopback, as the tests do. Without
`--db` it uses a scratch schema on the local PostgreSQL (`--store sqlite` for a temp
SQLite file).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection as Connection_
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_PG, generate_events, scratch_store, write_ndjson
from consumers.kafka_config import KafkaSettings
from consumers.kafka_topics import ensure_topic
from ledger.appending.appender import Appender
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.input import read_items
from ledger.reading import iter_rows
from relay import Relay, RelayConfig, build_message, ensure_schema, relay_status
from relay.config import MAX_IN_FLIGHT
from relay.producer import producer_config

PARTITIONS = 6


@contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from tests.kafka_broker import TansuBroker

    with TansuBroker() as tansu:
        yield tansu.bootstrap


@contextmanager
def database(url: str | None, store: str) -> Iterator[str]:
    if url:
        yield url
        return
    with scratch_store(store, DEFAULT_PG) as scratch:
        yield scratch


def store_events(url: str, count: int) -> float:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.ndjson"
        write_ndjson(generate_events(count, customers=max(1, count // 50)), path)
        app = LedgerApplication(parse_database_url(url))
        try:
            with Appender(app, batch_size=1000) as appender, path.open() as f:
                started = time.perf_counter()
                report = appender.append(read_items(f))
                elapsed = time.perf_counter() - started
        finally:
            app.close()
    assert report.ok, report.rejected[:3]
    return report.appended / elapsed


def relay_once(url: str, settings: KafkaSettings, topic: str) -> tuple[int, float]:
    relay = Relay(parse_database_url(url), settings, RelayConfig(topic=topic))
    relay.check_kafka()  # connecting is not what we measure
    started = time.perf_counter()
    result = relay.run(follow=False)
    return result.published, time.perf_counter() - started


def bare_once(
    settings: KafkaSettings, topic: str, messages: list[tuple[bytes, bytes, list[Any]]]
) -> tuple[int, float]:
    from kafka import KafkaProducer

    ensure_topic(settings, topic, PARTITIONS)
    producer = KafkaProducer(
        **settings.client_kwargs(),
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=MAX_IN_FLIGHT,
        linger_ms=RelayConfig.linger_ms,
        batch_size=RelayConfig.batch_bytes,
        compression_type=RelayConfig.compression,
        max_request_size=RelayConfig.max_request_size,
        allow_auto_create_topics=False,
    )
    started = time.perf_counter()
    futures = [producer.send(topic, value=v, key=k, headers=h) for k, v, h in messages]
    producer.flush()
    elapsed = time.perf_counter() - started
    assert all(f.succeeded() for f in futures)
    producer.close()
    return len(messages), elapsed


def bare_confluent_once(
    settings: KafkaSettings, topic: str, messages: list[tuple[bytes, bytes, list[Any]]]
) -> tuple[int, float]:
    """The same messages through a bare confluent-kafka producer with the relay's own
    producer settings (`relay.producer.producer_config`), every delivery confirmed."""
    from confluent_kafka import Producer

    ensure_topic(settings, topic, PARTITIONS)
    producer = Producer(producer_config(settings, RelayConfig(topic=topic)))
    delivered = [0]

    def on_delivery(error: Any, message: Any) -> None:
        assert error is None, error
        delivered[0] += 1

    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    for i, (k, v, h) in enumerate(messages):
        try:
            produce(topic, v, k, on_delivery=on_delivery, headers=h)
        except BufferError:
            producer.flush()
            produce(topic, v, k, on_delivery=on_delivery, headers=h)
        if i % 1000 == 999:
            poll(0)
    producer.flush()
    elapsed = time.perf_counter() - started
    assert delivered[0] == len(messages), (delivered[0], len(messages))
    return len(messages), elapsed


def throughput(url: str, settings: KafkaSettings, repeat: int) -> tuple[float, float, float]:
    """Median msgs/s of the relay, a bare confluent-kafka and a bare kafka-python
    producer, run after one another `repeat` times."""
    with Connection(parse_database_url(url)) as conn:
        messages = [build_message(row) for row in iter_rows(conn)]
    relay_rates: list[float] = []
    confluent_rates: list[float] = []
    bare_rates: list[float] = []
    for i in range(repeat):
        n, elapsed = bare_once(settings, f"bench.bare.{i}", messages)
        bare_rates.append(n / elapsed)
        n, elapsed = bare_confluent_once(settings, f"bench.confluent.{i}", messages)
        confluent_rates.append(n / elapsed)
        n, elapsed = relay_once(url, settings, f"bench.relay.{i}")
        assert n == len(messages), (n, len(messages))
        relay_rates.append(n / elapsed)
        print(
            f"  run {i + 1}: relay {relay_rates[-1]:,.0f} msgs/s, bare confluent-kafka "
            f"{confluent_rates[-1]:,.0f} msgs/s, bare kafka-python {bare_rates[-1]:,.0f} msgs/s"
        )
    return (
        statistics.median(relay_rates),
        statistics.median(confluent_rates),
        statistics.median(bare_rates),
    )


def _append_paced(url: str, count: int, rate: float, out: Connection_) -> None:
    """Child process: append `count` events one at a time at about `rate`/s and send
    back when each append started (CLOCK_MONOTONIC is one clock for all processes)."""
    from tests.factories import event, ndjson

    app = LedgerApplication(parse_database_url(url))
    try:
        with Appender(app) as appender:
            customer = f"latency-{uuid.uuid4().hex[:6]}"
            appender.append(
                read_items(io.StringIO(ndjson([event("customer.created", customer, {"card": {}})])))
            )
            sent_at: dict[str, float] = {}
            interval = 1.0 / rate
            for i in range(count):
                e = event("note.added", customer, {"note_id": f"lat-{i}", "text": "ping"})
                started = time.monotonic()
                sent_at[e["event_id"]] = started
                report = appender.append(read_items(io.StringIO(ndjson([e]))))
                assert report.appended == 1
                pause = interval - (time.monotonic() - started)
                if pause > 0:
                    time.sleep(pause)
    finally:
        app.close()
    out.send(sent_at)


def latency(url: str, settings: KafkaSettings, count: int, rate: float) -> list[float]:
    """Append-to-consumer latencies in ms while `ledger relay run --follow` follows.

    Writer, relay and consumer are separate processes, as deployed: in one process
    the writer's CPU-bound validation would hold the GIL and slow the relay's
    threads, which measures Python's scheduler rather than the relay."""
    from kafka import KafkaConsumer, TopicPartition

    from tests.cli_runner import LEDGER

    topic = f"bench.latency.{uuid.uuid4().hex[:6]}"
    ensure_topic(settings, topic, PARTITIONS)
    env = {**os.environ, "LEDGER_DATABASE_URL": url, "LEDGER_KAFKA_BOOTSTRAP": settings.bootstrap}
    relay = subprocess.Popen(
        [LEDGER, "relay", "run", "--follow", "--topic", topic],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    received_at: dict[str, float] = {}
    # Tansu holds a fetch for the whole fetch_max_wait_ms even when data arrives
    # (Kafka answers at once), so the default 500 ms would dominate the figure.
    consumer = KafkaConsumer(
        **settings.client_kwargs(), auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    done = threading.Event()

    def consume() -> None:
        while not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.monotonic()
                for r in records:
                    received_at[dict(r.headers)["event_id"].decode()] = now

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        # The new topic starts from position 0: measure only once the backlog is through.
        with Connection(parse_database_url(url)) as conn:
            deadline = time.monotonic() + 600
            while True:
                ensure_schema(conn)
                st = relay_status(conn, topic)
                if st.position and st.lag == 0:
                    break
                assert relay.poll() is None, "the relay exited"
                assert time.monotonic() < deadline, "the relay never caught up"
                time.sleep(0.2)
        parent, child = multiprocessing.Pipe()
        writer = multiprocessing.Process(target=_append_paced, args=(url, count, rate, child))
        writer.start()
        sent_at: dict[str, float] = parent.recv()
        writer.join()
        deadline = time.monotonic() + 10
        while not set(sent_at) <= set(received_at) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        done.set()
        reader.join()
        consumer.close()
        relay.terminate()
        relay.wait(15)
    missing = set(sent_at) - set(received_at)
    assert not missing, f"{len(missing)} events never reached the consumer"
    return [(received_at[k] - sent_at[k]) * 1000 for k in sent_at]


def confluent_version() -> str:
    import confluent_kafka

    return f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--db", help="ledger database URL (default: a scratch store)")
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--bootstrap", help="Kafka bootstrap (default: start Tansu)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-events", type=int, default=1000)
    parser.add_argument("--latency-rate", type=float, default=200.0, help="appends per second")
    args = parser.parse_args()

    with broker(args.bootstrap) as bootstrap, database(args.db, args.store) as url:
        settings = KafkaSettings(bootstrap=bootstrap)
        shown = parse_database_url(url).display()
        print(f"store {shown}, Kafka {bootstrap}")
        cfg = RelayConfig()
        print(
            f"relay producer: confluent-kafka {confluent_version()}, compression "
            f"{cfg.compression or 'none'}, batches of {cfg.batch_bytes // 1024} KiB, linger "
            f"{cfg.linger_ms} ms, {MAX_IN_FLIGHT} in flight, acks=all, idempotent, murmur2"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
        append_rate = store_events(url, args.events)
        print(f"stored {args.events:,} events ({append_rate:,.0f} events/s)")
        relay_rate, confluent_rate, bare_rate = throughput(url, settings, args.repeat)
        print(f"relay:                 {relay_rate:,.0f} msgs/s (median of {args.repeat})")
        print(f"bare confluent-kafka:  {confluent_rate:,.0f} msgs/s (median of {args.repeat})")
        print(f"bare kafka-python:     {bare_rate:,.0f} msgs/s (median of {args.repeat})")
        print(f"relay / bare confluent-kafka: {relay_rate / confluent_rate:.2f}")
        # The relay keeps up only if it publishes faster than a writer appends.
        print(f"relay / append: {relay_rate / append_rate:.2f} (goal >= 1.5, stretch 2)")
        # What a relay could reach at best with each client alone.
        print(f"bare confluent-kafka / append: {confluent_rate / append_rate:.2f}")
        print(f"bare kafka-python / append: {bare_rate / append_rate:.2f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        lat = sorted(latency(url, settings, args.latency_events, args.latency_rate))
        q = statistics.quantiles(lat, n=100)
        print(
            f"follow latency, append to consumer, {len(lat)} events at "
            f"{args.latency_rate:g}/s: p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, "
            f"p99 {q[98]:.1f} ms, max {lat[-1]:.1f} ms (goal p99 < 200 ms)"
        )


if __name__ == "__main__":
    main()
