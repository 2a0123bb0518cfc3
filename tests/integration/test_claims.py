"""The claiming rounds of tenant workers (`ledger.claims`), on a real PostgreSQL:
each worker takes ceil(tenants / peers), lets go of more, never shares a tenant,
and a closed session's tenants are free at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from ledger.claims import TenantClaims
from ledger.config import parse_database_url
from ledger.db import Connection

TENANTS = [f"shop-{i}" for i in range(1, 6)]


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def worker(url: str, stack: ExitStack, kind: str = "projections") -> TenantClaims:
    claims = TenantClaims(Connection(parse_database_url(url)), kind)
    stack.callback(claims.close)
    return claims


def settle(claims: TenantClaims) -> None:
    """One round, its releases let go of at once (no work to stop here)."""
    result = claims.round(TENANTS)
    for tenant in result.released:
        claims.unlock(tenant)


def test_two_workers_share_the_tenants_and_one_takes_over_when_the_other_is_gone(
    pg_url: str, stack: ExitStack
) -> None:
    first, second = worker(pg_url, stack), worker(pg_url, stack)
    assert first.peers() == second.peers() == 2
    result = first.round(TENANTS)
    assert (result.peers, result.share, len(result.claimed)) == (2, 3, 3)
    result = second.round(TENANTS)
    assert len(result.claimed) == 2  # the three others are held
    assert first.owned.isdisjoint(second.owned)
    assert first.owned | second.owned == set(TENANTS)

    second.close()  # its session ends: its locks are free, it is no peer
    deadline = time.monotonic() + 5
    while first.peers() > 1:  # the server ends the session a moment after the close
        assert time.monotonic() < deadline
        time.sleep(0.01)
    result = first.round(TENANTS)
    assert (result.peers, result.share) == (1, 5)
    assert first.owned == set(TENANTS)


def test_a_newcomer_gets_its_share_as_the_others_let_go(pg_url: str, stack: ExitStack) -> None:
    first = worker(pg_url, stack)
    settle(first)
    assert first.owned == set(TENANTS)
    second = worker(pg_url, stack)
    assert second.round(TENANTS).claimed == []  # all held yet
    result = first.round(TENANTS)
    assert result.share == 3 and result.released == ["shop-4", "shop-5"]
    for tenant in result.released:
        first.unlock(tenant)
    assert sorted(second.round(TENANTS).claimed) == ["shop-4", "shop-5"]
    # Tenants gone from the directory (or the selection) are let go of.
    assert first.round(TENANTS[1:]).released == ["shop-1"]


def test_kinds_and_directories_do_not_meet(
    pg_url: str, other_pg_url: str, stack: ExitStack
) -> None:
    projections, relay = worker(pg_url, stack), worker(pg_url, stack, "relay")
    elsewhere = worker(other_pg_url, stack)
    assert projections.peers() == relay.peers() == elsewhere.peers() == 1
    for claims in (projections, relay, elsewhere):
        assert sorted(claims.round(TENANTS).claimed) == TENANTS
