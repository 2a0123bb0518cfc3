"""`ledger tenants` and `--tenant`: the directory maps each tenant to its own store,
and every command that takes `--db` reaches a tenant's store through it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_runner import run_ledger
from tests.conftest import PG_URL, _pg_admin


@pytest.fixture(params=["sqlite", "postgresql"])
def directory_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The tenant directory on either kind of control database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tenants.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def tenants(directory_url: str, *args: str) -> dict[str, object]:
    result = run_ledger("--tenants-db", directory_url, "tenants", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_a_tenant_is_added_listed_used_and_removed(
    directory_url: str, fresh_pg_urls: Callable[[], str], tmp_path: Path
) -> None:
    shop1 = fresh_pg_urls().replace("postgres@", "postgres:sekret@")
    shop2 = f"sqlite:///{tmp_path / 'shop-2.db'}"
    added = tenants(directory_url, "add", "shop-1", "--db", shop1)
    assert added["tenant"] == "shop-1" and "sekret" not in json.dumps(added)
    tenants(directory_url, "add", "shop-2", "--db", shop2)

    listed = tenants(directory_url, "list")
    items = listed["items"]
    assert isinstance(items, list)
    assert [i["tenant"] for i in items] == ["shop-1", "shop-2"]
    assert "sekret" not in json.dumps(listed)
    assert items[1]["db"] == shop2 and items[0]["state"] == "active"

    # Each tenant's store is its own: the demo stored through one is not in the other.
    env = {"LEDGER_TENANTS_URL": directory_url}
    demo = run_ledger("--tenant", "shop-1", "demo", env=env)
    assert demo.returncode == 0, demo.stderr
    tab = run_ledger("--tenant", "shop-1", "tab", "cust-1001", "card", env=env)
    assert tab.returncode == 0, tab.stderr
    other = run_ledger("tab", "cust-1001", "card", env={**env, "LEDGER_TENANT": "shop-2"})
    assert other.returncode == 1 and "no customer 'cust-1001'" in other.stderr

    removed = tenants(directory_url, "remove", "shop-2", "--yes")
    assert removed["removed"] == "shop-2"
    assert [i["tenant"] for i in tenants(directory_url, "list")["items"]] == ["shop-1"]  # type: ignore[union-attr]
    assert Path(tmp_path / "shop-2.db").exists()  # the store is kept


def test_a_url_without_schema_gives_the_tenant_a_schema_of_its_own(
    directory_url: str,
) -> None:
    tenant = f"s{__import__('uuid').uuid4().hex[:10]}"
    try:
        added = tenants(directory_url, "add", tenant, "--db", PG_URL)
        assert str(added["db"]).endswith(f"?schema=tenant_{tenant}")
        with _pg_admin() as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = 'ledger_events'",
                (f"tenant_{tenant}",),
            ).fetchone()
        assert row == (1,)
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "tenant_{tenant}" CASCADE')


def test_the_directory_refuses_what_would_mix_tenants(
    directory_url: str, fresh_pg_urls: Callable[[], str]
) -> None:
    store = fresh_pg_urls()
    tenants(directory_url, "add", "shop-1", "--db", store)
    base = ("--tenants-db", directory_url, "tenants")

    again = run_ledger(*base, "add", "shop-1", "--db", fresh_pg_urls())
    assert again.returncode == 1 and "tenant 'shop-1' exists" in again.stderr
    shared = run_ledger(*base, "add", "shop-2", "--db", store)
    assert shared.returncode == 1 and "belongs to tenant 'shop-1'" in shared.stderr
    bad = run_ledger(*base, "add", "Shop/2", "--db", fresh_pg_urls())
    assert bad.returncode == 2 and "bad tenant id 'Shop/2'" in bad.stderr
    assert [i["tenant"] for i in tenants(directory_url, "list")["items"]] == ["shop-1"]  # type: ignore[union-attr]

    unknown = run_ledger("--tenants-db", directory_url, "--tenant", "nope", "tab", "c", "card")
    assert unknown.returncode == 1 and "unknown tenant 'nope'" in unknown.stderr
    both = run_ledger(
        "--tenants-db", directory_url, "--tenant", "shop-1", "--db", store, "tab", "c", "card"
    )
    assert both.returncode == 2 and "--db and --tenant" in both.stderr
    missing = run_ledger("--tenants-db", directory_url, "tenants", "remove", "nope", "--yes")
    assert missing.returncode == 1 and "unknown tenant 'nope'" in missing.stderr


def test_tenant_without_a_directory_is_a_usage_error() -> None:
    result = run_ledger("--tenant", "shop-1", "tab", "c", "card", env={"LEDGER_TENANTS_URL": ""})
    assert result.returncode == 2
    assert "no tenant directory: give --tenants-db URL or set LEDGER_TENANTS_URL" in result.stderr


def test_a_directory_in_a_schema_not_made_yet_makes_it(tmp_path: Path) -> None:
    schema = f"dir_{__import__('uuid').uuid4().hex[:10]}"
    directory_url = f"{PG_URL}?schema={schema}"
    try:
        tenants(directory_url, "add", "shop-1", "--db", f"sqlite:///{tmp_path / 's.db'}")
        assert [i["tenant"] for i in tenants(directory_url, "list")["items"]] == ["shop-1"]  # type: ignore[union-attr]
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
