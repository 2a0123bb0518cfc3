"""`ledger tenants move`: a tenant's store copied to another PostgreSQL store while
it takes appends, the copy's chain verified, the directory switched, and nothing
lost: appends during the switch wait or are refused retryably, never stored in the
old store."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from ledger.config import parse_database_url
from ledger.demo import demo_ndjson
from ledger.input import read_items
from ledger.rights import ALLOW_ALL
from services.appending import append_items
from services.bootstrap import Services
from services.errors import Category, ServiceError
from services.tenants import add_tenant, directory, move_tenant
from tests.cli_runner import run_ledger
from tests.factories import event, ndjson


@pytest.fixture
def directory_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tenants.db'}"


def tenant_services(directory_url: str) -> Services:
    return Services(tenant_option="shop-1", tenants_option=directory_url)


def append_text(services: Services, text: str) -> None:
    try:
        report = append_items(services.app(), ALLOW_ALL, read_items(io.StringIO(text)))
    finally:
        services.close()
    assert report.ok, report.rejected[:1]


def note(i: int) -> dict[str, object]:
    return event(
        "note.added",
        f"cust-{1001 + i % 3}",
        {"note_id": f"note-move-{i}", "text": f"during the move {i}"},
    )


def stored_event_ids(url: str) -> list[str]:
    with psycopg.connect(parse_database_url(url).conninfo()) as conn:
        schema = parse_database_url(url).schema
        rows = conn.execute(
            f'SELECT event_id FROM "{schema}".ledger_events ORDER BY notification_id'
        ).fetchall()
    return [str(r[0]) for r in rows]


@pytest.fixture
def tenant(directory_url: str, fresh_pg_urls: Callable[[], str]) -> Iterator[str]:
    source = fresh_pg_urls()
    add_tenant(directory(directory_url), "shop-1", source, None)
    append_text(tenant_services(directory_url), "\n".join(demo_ndjson()))
    yield source


def test_appends_during_a_move_all_land_once_in_the_new_store(
    directory_url: str, tenant: str, fresh_pg_urls: Callable[[], str]
) -> None:
    destination = fresh_pg_urls()
    acknowledged: list[str] = []
    retried = 0
    stop = threading.Event()

    def client() -> None:
        # A client as a CRM runs one: each request resolves the tenant afresh,
        # and an answer saying "retry" is retried.
        nonlocal retried
        i = 0
        while not stop.is_set():
            e = note(i)
            while True:
                try:
                    append_text(tenant_services(directory_url), ndjson([e]))
                    break
                except ServiceError as exc:
                    assert exc.category is Category.UNAVAILABLE, exc.message
                    retried += 1
                    time.sleep(0.02)
            acknowledged.append(str(e["event_id"]))
            i += 1

    worker = threading.Thread(target=client)
    worker.start()
    try:
        time.sleep(0.5)
        report = move_tenant(directory(directory_url), "shop-1", destination)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(30)

    moved = stored_event_ids(destination)
    assert len(moved) == len(set(moved))
    assert set(acknowledged) <= set(moved), "an acknowledged append was lost"
    assert len(acknowledged) > 5
    # Every event the old store holds is in the new one, in the same order.
    old = stored_event_ids(tenant)
    assert moved[: len(old)] == old
    assert report.head == len(old)
    # The directory names the new store, and its chain proves the copy.
    listed = run_ledger("--tenants-db", directory_url, "tenants", "list", "--format", "json")
    assert json.loads(listed.stdout)["items"][0]["db"] == parse_database_url(destination).display()
    verify = run_ledger("--tenants-db", directory_url, "--tenant", "shop-1", "audit", "verify")
    assert verify.returncode == 0, verify.stderr


def test_the_old_store_refuses_appends_retryably_after_the_move(
    directory_url: str, tenant: str, fresh_pg_urls: Callable[[], str]
) -> None:
    destination = fresh_pg_urls()
    move_tenant(directory(directory_url), "shop-1", destination)
    before = stored_event_ids(tenant)

    # A server still holding the old store (its cache not yet expired).
    with pytest.raises(ServiceError) as refused:
        append_text(Services(db_option=tenant), ndjson([note(1)]))
    assert refused.value.category is Category.UNAVAILABLE
    assert "moved" in refused.value.message and "retry" in refused.value.message
    assert stored_event_ids(tenant) == before

    cli = run_ledger("--db", tenant, "note", "add", "cust-1001", "late", "--as", "u-1")
    assert cli.returncode == 3 and "retry" in cli.stderr
    # Through the directory the same append goes to the new store.
    append_text(tenant_services(directory_url), ndjson([note(2)]))
    assert len(stored_event_ids(destination)) == len(before) + 1


def test_the_moved_tenant_reads_the_same_tabs(
    directory_url: str, tenant: str, fresh_pg_urls: Callable[[], str]
) -> None:
    env = {"LEDGER_TENANTS_URL": directory_url, "LEDGER_TENANT": "shop-1"}
    assert run_ledger("projections", "run", env=env).returncode == 0
    tabs = {
        tab: run_ledger("tab", "cust-1001", tab, "--format", "json", env=env).stdout
        for tab in ("timeline", "tasks", "orders", "card")
    }
    report = move_tenant(directory(directory_url), "shop-1", fresh_pg_urls())
    assert report.tables["rm_timeline"] > 0 and report.tables["projection_tracking"] > 0
    for tab, before in tabs.items():
        after = run_ledger("tab", "cust-1001", tab, "--format", "json", env=env)
        assert after.stdout == before, tab


def test_a_move_that_fails_gives_the_tenant_back(
    directory_url: str, tenant: str, fresh_pg_urls: Callable[[], str]
) -> None:
    destination = fresh_pg_urls()
    # A destination whose read model differs from the source's cannot take the
    # copy: the switch fails after the source was frozen.
    run_ledger("db", "migrate", env={"LEDGER_DATABASE_URL": destination})
    schema = parse_database_url(destination).schema
    with psycopg.connect(parse_database_url(destination).conninfo(), autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".rm_tasks ADD COLUMN extra text')
    with pytest.raises(ServiceError) as failed:
        move_tenant(directory(directory_url), "shop-1", destination)
    assert failed.value.category is Category.CONFLICT
    assert "rm_tasks differs" in failed.value.message

    # The tenant is where it was, active, and takes appends again.
    late = note(7)
    append_text(tenant_services(directory_url), ndjson([late]))
    assert stored_event_ids(tenant)[-1] == late["event_id"]
    assert late["event_id"] not in stored_event_ids(destination)


def test_a_move_is_refused_where_it_cannot_be_done(
    directory_url: str, tenant: str, fresh_pg_urls: Callable[[], str], tmp_path: Path
) -> None:
    found = directory(directory_url)
    with pytest.raises(ServiceError, match="already at"):
        move_tenant(found, "shop-1", tenant)
    with pytest.raises(ServiceError, match="PostgreSQL stores to PostgreSQL"):
        move_tenant(found, "shop-1", f"sqlite:///{tmp_path / 'x.db'}")
    other = fresh_pg_urls()
    # A store with events of its own beyond the tenant's head.
    append_text(Services(db_option=other), "\n".join(demo_ndjson()) + "\n" + ndjson([note(3)]))
    with pytest.raises(ServiceError, match="holds other events"):
        move_tenant(found, "shop-1", other)
    with pytest.raises(ServiceError, match="unknown tenant"):
        move_tenant(found, "nope", fresh_pg_urls())
