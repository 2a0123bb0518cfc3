"""Per-tenant metrics: per-server sums and the top tenants by append rate, head and
lag, read from every tenant's store with one statement per server, with a bounded
number of series however many tenants there are."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.demo import demo_ndjson
from ledger.input import read_items
from ledger.rights import ALLOW_ALL
from relay.tracking import save_position
from services import metrics
from services.appending import append_items
from services.bootstrap import Services
from services.tenants import add_tenant, directory, list_tenants
from tests.cli_runner import run_ledger
from tests.factories import event, ndjson


def append(directory_url: str, tenant: str, text: str) -> None:
    services = Services(tenant_option=tenant, tenants_option=directory_url)
    try:
        assert append_items(services.app(), ALLOW_ALL, read_items(io.StringIO(text))).ok
    finally:
        services.close()


def notes(n: int) -> str:
    return ndjson(
        [event("note.added", "cust-1001", {"note_id": f"n-{i}", "text": "x"}) for i in range(n)]
    )


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[str, ...], float]]:
    samples: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.values()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def test_tenant_metrics_sum_by_server_and_keep_the_top_tenants(
    tmp_path: Path, fresh_pg_urls: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "TENANTS_READ_INTERVAL_S", 0.0)
    directory_url = f"sqlite:///{tmp_path / 'tenants.db'}"
    found = directory(directory_url)
    add_tenant(found, "shop-a", fresh_pg_urls(), None)
    add_tenant(found, "shop-b", fresh_pg_urls(), None)
    add_tenant(found, "shop-c", f"sqlite:///{tmp_path / 'c.db'}", None)
    demo = "\n".join(demo_ndjson())
    for tenant in ("shop-a", "shop-b", "shop-c"):
        append(directory_url, tenant, demo)
    append(directory_url, "shop-b", notes(20))
    env = {"LEDGER_TENANTS_URL": directory_url, "LEDGER_TENANT": "shop-a"}
    assert run_ledger("projections", "run", env=env).returncode == 0
    entries = {t.tenant: t for t in list_tenants(found)}
    with Connection(entries["shop-b"].url) as conn:
        save_position(conn, "ledger-relay", 100)

    registry = CollectorRegistry()
    registry.register(metrics.TenantsCollector(lambda: list_tenants(found), top=2))
    first = scrape(registry)

    pg = entries["shop-a"].server
    lite = entries["shop-c"].server
    demo_head = demo.count("\n") + 1
    assert first["ledger_tenants"] == {(pg,): 2, (lite,): 1}
    assert first["ledger_tenant_server_up"] == {(pg,): 1, (lite,): 1}
    assert first["ledger_server_events"] == {(pg,): 2 * demo_head + 20, (lite,): demo_head}
    # shop-a's projections are caught up; b's and c's never ran.
    assert first["ledger_server_projection_lag_events"] == {
        (pg,): demo_head + 20,
        (lite,): demo_head,
    }
    assert first["ledger_server_relay_lag_events"][(pg,)] == demo_head + 20 - 100
    # Two series at most per tenant metric: the top two (a tie goes by name).
    assert first["ledger_tenant_head_position"] == {
        ("shop-b",): demo_head + 20,
        ("shop-a",): demo_head,
    }
    assert set(first["ledger_tenant_projection_lag_events"]) == {("shop-b",), ("shop-c",)}
    assert "ledger_tenant_append_rate" not in first  # one reading: no rate yet

    append(directory_url, "shop-c", notes(30))
    second = scrape(registry)
    assert set(second["ledger_tenant_append_rate"]) == {("shop-c",)}
    assert second["ledger_tenant_append_rate"][("shop-c",)] > 0
    assert second["ledger_server_events"][(lite,)] == demo_head + 30


def test_a_server_that_cannot_be_read_is_reported_down(
    tmp_path: Path, fresh_pg_urls: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "TENANTS_READ_INTERVAL_S", 0.0)
    found = directory(f"sqlite:///{tmp_path / 'tenants.db'}")
    add_tenant(found, "shop-a", fresh_pg_urls(), None)
    gone = parse_database_url(fresh_pg_urls())
    tenants = [*list_tenants(found)]
    broken = type(tenants[0])(
        "shop-x",
        f"postgresql://postgres@127.0.0.1:1/{gone.dbname}?schema={gone.schema}&connect_timeout=1",
    )
    registry = CollectorRegistry()
    registry.register(metrics.TenantsCollector(lambda: [*tenants, broken]))
    samples = scrape(registry)
    assert samples["ledger_tenant_server_up"][(broken.server,)] == 0
    assert samples["ledger_tenant_server_up"][(tenants[0].server,)] == 1


def test_a_worker_of_many_tenants_serves_their_metrics(
    pg_url: str, fresh_pg_urls: Callable[[], str]
) -> None:
    import socket
    import subprocess
    import time

    import httpx

    from tests.cli_runner import LEDGER

    found = directory(pg_url)
    add_tenant(found, "shop-a", fresh_pg_urls(), None)
    append(pg_url, "shop-a", "\n".join(demo_ndjson()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = subprocess.Popen(
        [
            LEDGER,
            "--tenants-db",
            pg_url,
            "projections",
            "run",
            "--follow",
            "--tenants",
            "all",
            "--claim-interval",
            "0.5",
            "--metrics-port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                if 'ledger_tenants{server="postgresql://' in text:
                    break
            except httpx.TransportError:
                pass
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            assert time.monotonic() < deadline, "no tenant metrics"
            time.sleep(0.2)
        assert "ledger_server_events{" in text
    finally:
        worker.terminate()
        assert worker.wait(30) == 0
