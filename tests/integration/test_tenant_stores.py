"""The per-server bound of a server of many tenants (`api.tenancy.TenantStores`):
at most `per_server` tenants' states open per database server, the least
recently used idle one closed for a new one, a request that finds them all busy
refused (503) after a bounded wait, and a state whose tenant moved closed once
its last request ends. The directory is a SQLite file; the states are stand-ins
(no store is opened)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from api.tenancy import TenantStores
from ledger.config import parse_database_url
from ledger.tenants import Tenant, TenantDirectory, TenantState
from services.errors import Category, ServiceError

PG_1 = "postgresql://ledger@pg-1:5432/ledger"
PG_2 = "postgresql://ledger@pg-2:5432/ledger"


class FakeState:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.closed = False
        self.services = self

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def found(tmp_path: Path) -> TenantDirectory:
    directory = TenantDirectory(parse_database_url(f"sqlite:///{tmp_path / 'tenants.db'}"))
    with directory.connect() as conn:
        directory.ensure(conn)
        with conn.transaction():
            for tenant in ("t1", "t2", "t3"):
                directory.add(conn, tenant, f"{PG_1}?schema={tenant}", None)
            directory.add(conn, "u1", f"{PG_2}?schema=u1", None)
    return directory


def stores(found: TenantDirectory, **options: Any) -> tuple[TenantStores, list[FakeState]]:
    made: list[FakeState] = []

    def make(tenant: Tenant, slots: threading.BoundedSemaphore) -> Any:
        made.append(FakeState(tenant))
        return made[-1]

    return TenantStores(found, make, **options), made


def lease(stores: TenantStores, tenant: str) -> tuple[Any, dict[str, Any]]:
    scope: dict[str, Any] = {}
    return stores.lease(tenant, scope), scope


def release(scope: dict[str, Any], status: int = 200) -> None:
    scope.pop("ledger_release")(status)


def test_the_least_recently_used_idle_state_makes_room_on_its_server(
    found: TenantDirectory,
) -> None:
    tenants, made = stores(found, per_server=2)
    for name in ("t1", "t2", "t1"):
        _, scope = lease(tenants, name)
        release(scope)
    assert [s.tenant.tenant for s in made] == ["t1", "t2"]  # t1's state was kept
    _, scope = lease(tenants, "t3")
    release(scope)
    assert made[1].closed and not made[0].closed  # t2 was used least recently
    assert tenants.open_count("postgresql://pg-1:5432/ledger") == 2
    # Another server has room of its own.
    _, scope = lease(tenants, "u1")
    release(scope)
    assert not made[0].closed and tenants.open_count("postgresql://pg-2:5432/ledger") == 1


def test_a_request_finding_every_state_of_its_server_busy_waits_then_gets_503(
    found: TenantDirectory,
) -> None:
    tenants, made = stores(found, per_server=2, wait_seconds=0.2)
    _, first = lease(tenants, "t1")
    _, second = lease(tenants, "t2")
    with pytest.raises(ServiceError) as refused:
        lease(tenants, "t3")
    assert refused.value.category is Category.UNAVAILABLE
    # One going idle lets a waiting request in.
    timer = threading.Timer(0.05, release, (first,))
    tenants.wait_seconds = 5
    timer.start()
    state, third = lease(tenants, "t3")
    timer.join()
    assert state.tenant.tenant == "t3" and made[0].closed
    release(second)
    release(third)


def test_a_moved_tenant_gets_a_new_state_and_the_old_closes_after_its_last_request(
    found: TenantDirectory,
) -> None:
    tenants, _ = stores(found, ttl=0)
    old, in_flight = lease(tenants, "t1")
    with found.connect() as conn, conn.transaction():
        found.set_state(conn, "t1", TenantState.MOVING)
    with pytest.raises(ServiceError) as moving:
        lease(tenants, "t1")
    assert moving.value.category is Category.UNAVAILABLE
    assert not old.closed  # a request still uses it
    with found.connect() as conn, conn.transaction():
        found.switch(conn, "t1", f"{PG_2}?schema=t1")
    new, scope = lease(tenants, "t1")
    assert new is not old and new.tenant.server == "postgresql://pg-2:5432/ledger"
    release(in_flight)
    closed_soon(old)
    assert not new.closed
    release(scope)
    tenants.close()
    assert new.closed


def closed_soon(state: FakeState) -> None:
    """Closed within a second (a released state closes on a thread of its own)."""
    deadline = time.monotonic() + 1
    while not state.closed:
        assert time.monotonic() < deadline, "not closed"
        time.sleep(0.01)


def test_an_entry_is_trusted_for_its_ttl_and_a_503_makes_the_next_request_look_again(
    found: TenantDirectory,
) -> None:
    tenants, made = stores(found, ttl=60)
    _, scope = lease(tenants, "t1")
    release(scope)
    with found.connect() as conn, conn.transaction():
        found.set_state(conn, "t1", TenantState.MOVING)
    _, scope = lease(tenants, "t1")  # still trusted: no look at the directory
    release(scope, 503)  # its store failed: look again next time
    with pytest.raises(ServiceError):
        lease(tenants, "t1")
    assert made[0].closed
