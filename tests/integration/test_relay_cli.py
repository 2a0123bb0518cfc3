"""`ledger relay` as a user runs it: output, exit codes, and failing fast on a bad
bootstrap or a refused login."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.cli_runner import run_ledger
from tests.factories import append_to_url as append
from tests.kafka_broker import TansuBroker
from tests.relay_support import history, stored_positions, topic_reader

if TYPE_CHECKING:
    from subprocess import CompletedProcess


class AuthenticatingBroker(TansuBroker):
    """Tansu requiring SASL: a login it does not know is refused."""

    def command(self) -> list[str]:
        return [*super().command(), "--authentication"]

    def _wait_ready(self) -> None:
        # The base probe lists topics without logging in, which this broker refuses:
        # an open port is as ready as it gets.
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"tansu --authentication did not listen:\n{self.log_tail()}")


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[AuthenticatingBroker]:
    broker = AuthenticatingBroker(log_dir=tmp_path / "tansu-auth")
    broker.start()
    yield broker
    broker.stop()


def one_error_line(result: CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_run_then_status_as_json(sqlite_url: str, kafka_broker: TansuBroker) -> None:
    append(sqlite_url, history(["ann", "bob"], 10))
    stored = stored_positions(sqlite_url)
    env = {"LEDGER_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}

    before = run_ledger("relay", "status", "--format", "json", db=sqlite_url)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["lag"] == len(stored)

    result = run_ledger("relay", "run", "--format", "json", db=sqlite_url, env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["state"] == "done" and lines[-1]["published"] == len(stored)
    assert lines[-1]["position"] == max(stored)
    assert any(line.get("state") == "caught_up" for line in lines[:-1])
    assert "created Kafka topic ledger.events with 6 partitions" in result.stderr

    status = run_ledger("relay", "status", "--format", "json", db=sqlite_url)
    got = json.loads(status.stdout)
    assert (got["position"], got["head"], got["lag"]) == (max(stored), max(stored), 0)
    assert got["updated_at"] is not None

    human = run_ledger("relay", "status", db=sqlite_url)
    assert f"position {max(stored)}, head {max(stored)}, lag 0 events" in human.stdout

    with topic_reader(kafka_broker.bootstrap) as reader:
        reader.read_until(lambda records: len(records) >= len(stored))

    # Republish everything, e.g. to a topic that was lost.
    reset = run_ledger("relay", "reset", "--to", "0", "--yes", db=sqlite_url)
    assert reset.returncode == 0, reset.stderr
    assert f"lag {len(stored)} events" in reset.stdout
    again = run_ledger("relay", "run", db=sqlite_url, env=env)
    assert again.returncode == 0, again.stderr
    assert f"published {len(stored)} events to ledger.events" in again.stdout


def test_unreachable_bootstrap_is_one_line_and_exit_3(sqlite_url: str) -> None:
    started = time.monotonic()
    result = run_ledger(
        "relay",
        "run",
        "--follow",
        "--bootstrap",
        f"127.0.0.1:{closed_port()}",
        "--connect-timeout",
        "1",
        db=sqlite_url,
        timeout=30,
    )
    assert result.returncode == 3
    line = one_error_line(result)
    assert "not reachable within 1s" in line and "ECONNREFUSED" in line, line
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bootstrap", "kafka:ninety"], "'kafka:ninety' is not HOST:PORT"),
        (["--bootstrap", ""], "bad Kafka bootstrap"),
        (["--sasl-mechanism", "PLAIN"], "needs --security-protocol SASL_SSL or SASL_PLAINTEXT"),
        (["--security-protocol", "SASL_SSL"], "SASL PLAIN needs a username and a password"),
        (["--security-protocol", "SSL", "--ssl-cafile", "/nonexistent.pem"], "not a readable"),
    ],
)
def test_bad_kafka_options_are_usage_errors(sqlite_url: str, args: list[str], message: str) -> None:
    result = run_ledger("relay", "run", *args, db=sqlite_url)
    assert result.returncode == 2, result.stderr
    assert message in one_error_line(result)


def test_refused_login_is_one_line_and_exit_3(
    sqlite_url: str, auth_broker: AuthenticatingBroker
) -> None:
    result = run_ledger(
        "relay",
        "run",
        "--bootstrap",
        auth_broker.bootstrap,
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-mechanism",
        "SCRAM-SHA-256",
        "--sasl-username",
        "relay",
        "--connect-timeout",
        "2",
        db=sqlite_url,
        env={"LEDGER_KAFKA_SASL_PASSWORD": "wrong"},
        timeout=30,
    )
    assert result.returncode == 3
    line = one_error_line(result)
    assert "SASL_PLAINTEXT, SASL SCRAM-SHA-256 as relay" in line, line
    assert "SASL authentication failed" in line, line
    assert "wrong" not in line


def test_a_store_without_the_ledgers_tables_is_one_line_and_exit_3(
    store_url: str, kafka_broker: TansuBroker
) -> None:
    # Migrations off: the relay finds no events table, on either store, and says
    # what to run (psycopg's and SQLite's "missing table" errors told apart
    # without importing psycopg on SQLite).
    topic = f"no-tables-{uuid.uuid4().hex[:8]}"
    env = {
        "LEDGER_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LEDGER_AUTO_MIGRATE": "0",
        "LEDGER_KAFKA_TOPIC": topic,
    }
    result = run_ledger("relay", "run", db=store_url, env=env)
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "has no ledger tables: run `ledger db migrate`" in errors[0], (
        result.stderr
    )
    # Failed before it touched the broker: no topic left behind for a relay that never ran.
    assert topic not in kafka_broker.list_topics()
    assert "created Kafka topic" not in result.stderr
