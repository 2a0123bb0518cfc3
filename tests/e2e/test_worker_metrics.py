"""`--metrics-port` on the long-running workers: the projection follower and the
relay expose the head and every lag, read from the tracking tables."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.cli_runner import LEDGER, run_ledger
from tests.factories import append_to_url, event
from tests.http_support import free_socket
from tests.kafka_broker import TansuBroker
from tests.waiting import wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    except httpx.TransportError:
        return {}


def run_worker(
    url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    process = subprocess.Popen(
        [LEDGER, "--db", url, *args, "--follow", "--metrics-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return process, port


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def test_projection_follower_reports_head_and_lag(store_url: str) -> None:
    created = event("customer.created", "c1", {"card": {"name": "Ann"}})
    notes = [event("note.added", "c1", {"note_id": f"n{i}", "text": "x"}) for i in range(5)]
    append_to_url(store_url, [created])
    process, port = run_worker(store_url, "projections", "run")
    try:
        lag = ("ledger_projection_lag_events", (("name", "timeline"),))
        wait_for(lambda: scrape(port).get(lag) == 0, 60, "the follower to catch up", every=0.1)
        append_to_url(store_url, notes)
        wait_for(
            lambda: (
                scrape(port).get(("ledger_head_position", ())) == 6 and scrape(port).get(lag) == 0
            ),
            60,
            "the new head to be applied",
            every=0.1,
        )
        assert scrape(port)[("ledger_store_up", ())] == 1
    finally:
        stop(process)


def test_relay_reports_its_lag(sqlite_url: str, kafka_broker: TansuBroker) -> None:
    append_to_url(sqlite_url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    env = {"LEDGER_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}
    process, port = run_worker(sqlite_url, "relay", "run", env=env)
    try:
        lag = ("ledger_relay_lag_events", (("name", "ledger.events"),))
        wait_for(lambda: scrape(port).get(lag) == 0, 60, "the relay to publish", every=0.1)
        assert scrape(port)[("ledger_relay_lag_seconds", (("name", "ledger.events"),))] == 0
    finally:
        stop(process)


def test_metrics_port_needs_follow(sqlite_url: str) -> None:
    result = run_ledger("projections", "run", "--metrics-port", "9999", db=sqlite_url)
    assert result.returncode == 2 and "--metrics-port needs --follow" in result.stderr
