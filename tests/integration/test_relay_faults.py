"""The relay under faults, as deployed: the real `ledger relay run --follow` process,
a real broker that stops and comes back empty, a real SIGKILL. In every case a
consumer must see every stored event at least once, each customer's in order."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.config import parse_database_url
from ledger.db import Connection
from relay import relay_status
from tests.cli_runner import LEDGER
from tests.factories import append_to_url as append
from tests.relay_support import (
    TOPIC,
    assert_delivered_in_order,
    history,
    position_of,
    stored_positions,
    topic_reader,
)

if TYPE_CHECKING:
    from tests.kafka_broker import TansuBroker

CUSTOMERS = [f"cust-{i}" for i in range(12)]
PER_CUSTOMER = 800  # ~9,600 events: a few seconds of relaying, so there is a "mid"


def start_relay(url: str, bootstrap: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": url,
        "LEDGER_KAFKA_BOOTSTRAP": bootstrap,
    }
    with log.open("ab") as err:
        return subprocess.Popen(
            [LEDGER, "relay", "run", "--batch-size", "250", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def tracked(url: str) -> int:
    # A read only: the relay may be frozen (SIGSTOP) inside its own write transaction,
    # and on SQLite a schema check here would wait for that lock. The relay created
    # the table before it published anything.
    with Connection(parse_database_url(url)) as conn:
        return relay_status(conn, TOPIC).position


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"relay ignored SIGTERM:\n{log.read_text()}") from None
        assert code == 0, f"relay exited {code}:\n{log.read_text()}"


def test_broker_stops_mid_relay_and_comes_back_empty(
    store_url: str, kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    append(store_url, history(CUSTOMERS, PER_CUSTOMER))
    stored = stored_positions(store_url)
    log = tmp_path / "relay.log"
    relay = start_relay(
        store_url, kafka_broker.bootstrap, log, "--follow", "--delivery-timeout", "5"
    )
    try:
        with topic_reader(kafka_broker.bootstrap) as reader:
            reader.read_until(lambda records: len(records) >= 1500)
            # Freeze the relay mid-catch-up, let the consumer take everything the
            # broker has, then lose the broker: a memory broker forgets it all, so
            # what was acknowledged before the stop must have been read by then.
            relay.send_signal(signal.SIGSTOP)
            time.sleep(0.3)
            reader.drain()
            before = tracked(store_url)
            assert before < max(stored), "the relay finished before the broker stopped"
            kafka_broker.stop()
            relay.send_signal(signal.SIGCONT)
            time.sleep(1.5)  # the relay finds Kafka gone and backs off
            kafka_broker.start()
            reader.restart_from_beginning()
            reader.read_positions(set(stored), timeout_s=40)
            assert_delivered_in_order(reader.records, stored)
            # New events after the outage flow as usual.
            more = append(store_url, history(CUSTOMERS[:2], 2, start=PER_CUSTOMER))
            assert more.last_position is not None
            reader.read_positions({more.last_position})
    finally:
        stop(relay, log)
    lines = log.read_text().splitlines()
    assert sum("Kafka unavailable" in line for line in lines) == 1, lines
    assert sum("Kafka is back" in line for line in lines) == 1, lines
    assert tracked(store_url) == max(stored_positions(store_url))


def test_relay_killed_mid_batch_resumes_without_a_gap(
    store_url: str, kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    append(store_url, history(CUSTOMERS, PER_CUSTOMER))
    stored = stored_positions(store_url)
    log = tmp_path / "relay.log"
    first = start_relay(store_url, kafka_broker.bootstrap, log, "--follow")
    try:
        with topic_reader(kafka_broker.bootstrap) as reader:
            reader.read_until(lambda records: len(records) >= 1500)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            at_kill = tracked(store_url)
            assert at_kill < max(stored), "the relay finished before it was killed"
            second = start_relay(store_url, kafka_broker.bootstrap, log)
            assert second.wait(60) == 0, log.read_text()
            reader.read_positions(set(stored))
            reader.drain()
            assert_delivered_in_order(reader.records, stored)
            # At-least-once: what was sent after the recorded position may come twice;
            # nothing at or below it is sent again.
            counts = Counter(position_of(r) for r in reader.records)
            assert all(p > at_kill for p, n in counts.items() if n > 1)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert tracked(store_url) == max(stored)
