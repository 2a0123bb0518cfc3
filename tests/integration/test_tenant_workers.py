"""Workers that share a hosted deployment's tenants out among themselves, as
deployed: real `ledger projections|relay run --follow --tenants all` processes on a
PostgreSQL tenant directory, a real broker, a real SIGKILL. Each tenant is worked by
exactly one worker (its advisory lock on the directory's database has one holder),
a killed worker's tenants are taken over within the documented bound, every
tenant's read models equal a single-store run's, and the relay publishes every
tenant's events once each, keyed TENANT/CUSTOMER_ID with a `tenant` header."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from click.testing import CliRunner

from cli.main import ledger
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.locks import tenant_lock_keys, worker_lock_keys
from ledger.tenants import TenantDirectory
from relay import relay_status
from services.operations import rebuild_projections
from services.tenants import add_tenant
from services.workers import takeover_bound
from tests import projection_support, relay_support
from tests.cli_runner import LEDGER
from tests.conftest import PG_URL
from tests.factories import append_to_url as append
from tests.factories import event
from tests.projection_support import NoticeProcess
from tests.relay_support import position_of, stored_positions, topic_reader

if TYPE_CHECKING:
    from tests.kafka_broker import TansuBroker

CLAIM_INTERVAL = 0.5
# What a busy test machine (two cores, four test processes) may add to the
# takeover bound: the time to schedule the survivor's threads, not its rounds.
SLACK_S = 1.0
TENANTS = ["shop-1", "shop-2", "shop-3"]
SURVIVOR_CLAIM = 2.0


def add_tenants(directory: str, make_url: Callable[[], str]) -> dict[str, str]:
    found = TenantDirectory(parse_database_url(directory))
    return {t: add_tenant(found, t, make_url(), None).db for t in TENANTS}


class Worker(NoticeProcess):
    """`ledger <command> run --follow --tenants all --format json` in a real process,
    its notices collected."""

    def __init__(self, directory: str, command: str, *extra: str, env: dict[str, str]) -> None:
        super().__init__(
            [
                "--tenants-db",
                directory,
                command,
                "run",
                "--follow",
                "--tenants",
                "all",
                "--claim-interval",
                str(CLAIM_INTERVAL),
                "--format",
                "json",
                *extra,
            ],
            env,
        )

    def wait_for(self, event: str, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while sum(n["event"] == event for n in self.notices) < count:
            assert self.process.poll() is None, "".join(self.errors)
            assert time.monotonic() < deadline, (self.notices, "".join(self.errors))
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, as a supervisor would: exit 0, having said it stopped."""
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(30)
        for reader in self._readers:
            reader.join(5)
        assert code == 0, "".join(self.errors)
        assert self.notices[-1]["event"] == "stopped", self.notices[-3:]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def holders(directory: str, kind: str) -> dict[str, list[int]]:
    """tenant -> the backends holding its lock of `kind` on the directory's database."""
    schema = parse_database_url(directory).schema
    found: dict[str, list[int]] = {}
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for tenant in TENANTS:
            cls, key = tenant_lock_keys(kind, schema, tenant)
            rows = conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2",
                (cls % 2**32, key % 2**32),
            ).fetchall()
            found[tenant] = sorted(int(r[0]) for r in rows)
    return found


def live_workers(directory: str, kind: str) -> int:
    cls, key = worker_lock_keys(kind, parse_database_url(directory).schema)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2",
            (cls % 2**32, key % 2**32),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_for_owners(
    directory: str, kind: str, workers: int, timeout: float = 20
) -> dict[str, list[int]]:
    """Until every tenant has exactly one owner and `workers` workers own some,
    as evenly as the shares allow (ceil(tenants / workers) at most each)."""
    deadline = time.monotonic() + timeout
    while True:
        found = holders(directory, kind)
        owners = Counter(pids[0] for pids in found.values() if len(pids) == 1)
        share = -(-len(TENANTS) // workers)
        if (
            all(len(pids) == 1 for pids in found.values())
            and len(owners) == workers
            and max(owners.values()) <= share
        ):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_projection_workers_share_the_tenants_and_take_over_a_killed_ones(
    pg_url: str, fresh_pg_urls: Callable[[], str]
) -> None:
    stores = add_tenants(pg_url, fresh_pg_urls)
    for seed, url in enumerate(stores.values()):
        append(url, projection_support.history(customers=3, per_customer=12, seed=seed))
    env = {"LEDGER_TENANTS_URL": pg_url}
    first = Worker(pg_url, "projections", env=env)
    second = Worker(pg_url, "projections", env=env)
    try:
        # Two workers, three tenants: two and one, each tenant owned by one.
        wait_for_owners(pg_url, "projections", workers=2)
        assert live_workers(pg_url, "projections") == 2
        for seed, url in enumerate(stores.values()):
            projection_support.wait_until_caught_up(url)
            # New events wake the owner (LISTEN on the server, not a poll per tenant).
            append(url, projection_support.history(3, 6, seed=10 + seed, prefix="d"))
        for url in stores.values():
            projection_support.wait_until_caught_up(url)
            # What the workers made is what a single-store run makes from scratch.
            live = projection_support.dump(url)
            with Connection(parse_database_url(url)) as conn:
                rebuild_projections(conn, ())
            assert projection_support.dump(url) == live

        first.kill()
        killed = time.monotonic()
        owners = wait_for_owners(pg_url, "projections", workers=1, timeout=10)
        took = time.monotonic() - killed
        assert took <= takeover_bound(CLAIM_INTERVAL) + SLACK_S, took
        assert len({pids[0] for pids in owners.values()}) == 1
        for seed, url in enumerate(stores.values()):
            append(url, projection_support.history(3, 4, seed=20 + seed, prefix="e"))
        for url in stores.values():
            projection_support.wait_until_caught_up(url)
    finally:
        first.kill()
        second.stop()
    assert {n["tenant"] for n in second.notices if n["event"] == "claimed"} == set(TENANTS)


def test_a_worker_that_loses_the_directory_stops_and_claims_again(
    pg_url: str, fresh_pg_urls: Callable[[], str]
) -> None:
    stores = add_tenants(pg_url, fresh_pg_urls)
    worker = Worker(pg_url, "projections", env={})
    try:
        wait_for_owners(pg_url, "projections", workers=1)
        worker.wait_for("claimed", len(TENANTS))
        # Its directory session ends (a failover, an operator): it owns nothing now.
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            pid = holders(pg_url, "projections")[TENANTS[0]][0]
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        worker.wait_for("directory_unavailable", timeout=10)
        worker.wait_for("claimed", 2 * len(TENANTS), timeout=15)
        for seed, url in enumerate(stores.values()):
            append(url, projection_support.history(2, 3, seed=seed))
        for url in stores.values():
            projection_support.wait_until_caught_up(url)
    finally:
        worker.stop()


def test_a_sqlite_directory_has_one_worker_and_a_broken_store_stops_only_its_tenant(
    tmp_path: Path, fresh_pg_urls: Callable[[], str]
) -> None:
    directory = f"sqlite:///{tmp_path / 'tenants.db'}"
    stores = add_tenants(directory, fresh_pg_urls)
    broken = TENANTS[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{parse_database_url(stores[broken]).schema}" CASCADE')
    worker = Worker(directory, "projections", "--idle-close", "1", env={})
    try:
        worker.wait_for("claimed", len(TENANTS))
        worker.wait_for("failed")
        time.sleep(1.5)  # idle: the tenants' connections closed, made again when woken
        for seed, (tenant, url) in enumerate(stores.items()):
            if tenant != broken:
                append(url, projection_support.history(2, 3, seed=seed))
                projection_support.wait_until_caught_up(url)
    finally:
        worker.stop()
    failed = [n for n in worker.notices if n["event"] == "failed"]
    # Reported once (then retried with back-off), and only for its tenant.
    assert [n["tenant"] for n in failed] == [broken], failed
    assert "started" in worker.notices[0]["event"]
    assert "SQLite directory" in worker.notices[0]["detail"]


def test_relay_workers_publish_each_tenants_events_once_in_order_and_take_over(
    pg_url: str, fresh_pg_urls: Callable[[], str], kafka_broker: TansuBroker
) -> None:
    customers = [f"cust-{i}" for i in range(4)]
    stores = add_tenants(pg_url, fresh_pg_urls)
    for url in stores.values():
        append(url, relay_support.history(customers, 30))
    env = {"LEDGER_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}
    extra = ("--batch-size", "40")
    first = Worker(pg_url, "relay", *extra, env=env)
    second = Worker(pg_url, "relay", *extra, env=env)
    try:
        with topic_reader(kafka_broker.bootstrap) as reader:
            wait_for_owners(pg_url, "relay", workers=2)

            def wanted() -> set[tuple[str, int]]:
                return {(t, p) for t, url in stores.items() for p in stored_positions(url)}

            def read_all() -> None:
                want = wanted()
                reader.read_until(lambda records: want <= {_where(r) for r in records})

            read_all()
            time.sleep(1.0)  # every acknowledged position recorded (and idle)
            first.kill()
            killed = time.monotonic()
            wait_for_owners(pg_url, "relay", workers=1, timeout=10)
            took = time.monotonic() - killed
            assert took <= takeover_bound(CLAIM_INTERVAL) + SLACK_S, took
            for url in stores.values():
                append(url, relay_support.history(customers, 3, start=30))
            read_all()
            reader.drain()
            records = reader.records
    finally:
        first.kill()
        second.stop()

    # Exactly once per tenant: no event of any tenant published twice (handing a
    # tenant over, at a rebalance or after the kill, repeats nothing that was
    # recorded), and each tenant's customers in position order.
    counts = Counter(_where(r) for r in records)
    assert set(counts) == {(t, p) for t, url in stores.items() for p in stored_positions(url)}
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:10]
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for tenant, url in stores.items():
        customer_of = stored_positions(url)
        for r in (r for r in records if dict(r.headers)["tenant"] == tenant.encode()):
            assert r.key == f"{tenant}/{customer_of[position_of(r)]}".encode()
            per_key[r.key].append(position_of(r))
    assert len(per_key) == len(TENANTS) * len(customers)
    for key, positions in per_key.items():
        assert positions == sorted(positions), key


def test_a_relay_worker_killed_mid_batch_loses_nothing_and_keeps_each_customers_order(
    pg_url: str, fresh_pg_urls: Callable[[], str], kafka_broker: TansuBroker
) -> None:
    customers = [f"cust-{i}" for i in range(8)]
    stores = add_tenants(pg_url, fresh_pg_urls)
    env = {"LEDGER_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}
    extra = ("--batch-size", "5")  # slow enough to be killed mid-way
    first = Worker(pg_url, "relay", *extra, env=env)
    second: Worker | None = None
    try:
        wait_for_owners(pg_url, "relay", workers=1)
        # The survivor claims at most every 2 s: the positions read just after the
        # kill are the killed worker's own, not its successor's already (a busy
        # machine can take more than one short interval to read them).
        second = Worker(pg_url, "relay", *extra, "--claim-interval", str(SURVIVOR_CLAIM), env=env)
        wait_for_owners(pg_url, "relay", workers=2)
        # `second` has one tenant (its share of three is two, `first` kept two).
        with topic_reader(kafka_broker.bootstrap) as reader:
            # About 1,200 events a tenant: enough that the kill lands mid-way, few
            # enough that the survivor publishes the rest in batches of five well
            # within the wait below on a loaded CI machine (2,000 once took over 60 s).
            for url in stores.values():
                append(url, relay_support.history(customers, 150))
            reader.read_until(lambda records: len(records) >= 600)
            first.kill()
            killed = time.monotonic()
            at_kill = {t: tracked(url) for t, url in stores.items()}
            assert any(at_kill[t] < max(stored_positions(url)) for t, url in stores.items())
            wait_for_owners(pg_url, "relay", workers=1, timeout=10)
            took = time.monotonic() - killed
            assert took <= takeover_bound(SURVIVOR_CLAIM) + SLACK_S, took
            want = {(t, p) for t, url in stores.items() for p in stored_positions(url)}
            reader.read_until(lambda records: want <= {_where(r) for r in records}, 60)
            reader.drain()
            records = reader.records
    finally:
        first.kill()
        if second is not None:
            second.stop()

    # At-least-once: what the killed worker sent after its recorded position may
    # come twice; nothing at or below it does, and first deliveries keep each
    # tenant's customers in order.
    counts = Counter(_where(r) for r in records)
    assert all(p > at_kill[t] for (t, p), n in counts.items() if n > 1)
    for tenant, url in stores.items():
        relay_support.assert_delivered_in_order(
            [r for r in records if dict(r.headers)["tenant"] == tenant.encode()],
            {p: f"{tenant}/{c}" for p, c in stored_positions(url).items()},
        )


def test_a_tenants_relay_never_runs_beside_another_relay_of_its_store(
    pg_url: str, fresh_pg_urls: Callable[[], str], kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    """The second guard: a tenant's store lock. A relay of one tenant's store run
    by hand (`ledger --tenant ID relay run --follow`, or a worker that lost its
    directory and still publishes) keeps the worker's relay of that tenant off
    until it stops; then the worker's takes over where it left off."""
    stores = add_tenants(pg_url, fresh_pg_urls)
    tenant, url = TENANTS[0], stores[TENANTS[0]]
    bootstrap = kafka_broker.bootstrap
    log = tmp_path / "relay.log"
    by_hand = subprocess.Popen(
        [LEDGER, "relay", "run", "--follow"],
        env={**os.environ, "LEDGER_DATABASE_URL": url, "LEDGER_KAFKA_BOOTSTRAP": bootstrap},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    worker: Worker | None = None
    try:
        with topic_reader(bootstrap) as reader:
            first = append(url, relay_support.history(["ann", "bob"], 3))
            assert first.last_position is not None
            reader.read_positions({first.last_position})
            worker = Worker(pg_url, "relay", env={"LEDGER_KAFKA_BOOTSTRAP": bootstrap})
            wait_for_owners(pg_url, "relay", workers=1)
            worker.wait_for("claimed", len(TENANTS))
            more = append(url, relay_support.history(["ann", "bob"], 2, start=3))
            assert more.last_position is not None
            reader.read_positions({more.last_position})
            time.sleep(1.0)
            # Everything so far came from the relay run by hand: no tenant header.
            assert all("tenant" not in dict(r.headers) for r in reader.records)
            by_hand.terminate()
            assert by_hand.wait(15) == 0, log.read_text()
            last = append(url, relay_support.history(["ann", "bob"], 2, start=5))
            assert last.last_position is not None
            reader.read_positions({last.last_position})
            reader.drain()
            records = reader.records
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
        if worker is not None:
            worker.stop()
    # Each event once; the worker's relay went on after the one by hand stopped.
    counts = Counter(position_of(r) for r in records)
    assert set(counts) == set(stored_positions(url)) and max(counts.values()) == 1
    tenant_records = [r for r in records if "tenant" in dict(r.headers)]
    assert tenant_records and all(position_of(r) > more.last_position for r in tenant_records)
    assert all(r.key.startswith(f"{tenant}/".encode()) for r in tenant_records)


def tracked(url: str) -> int:
    with Connection(parse_database_url(url)) as conn:
        return relay_status(conn, relay_support.TOPIC).position


def _where(record: Any) -> tuple[str, int]:
    return dict(record.headers)["tenant"].decode(), position_of(record)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["projections", "run", "--tenants", "all"], "--tenants needs --follow"),
        (["--db", "sqlite:///x.db", "relay", "run", "--follow", "--tenants", "all"], "no --db"),
        (["projections", "run", "--follow", "--tenants", "Shop!"], "bad tenant id"),
        (["relay", "run", "--follow", "--tenants", "all"], "no tenant directory"),
    ],
)
def test_bad_worker_options_are_usage_errors(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEDGER_TENANTS_URL", raising=False)
    result = CliRunner().invoke(ledger, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


class _Scheduled:
    """The worker a server watch schedules tenants on: records (tenant, head)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    def schedule(self, tenant: str, head: int | None) -> None:
        self.calls.append((tenant, head))


def test_a_server_watch_schedules_a_store_without_its_tables_for_a_pass(pg_url: str) -> None:
    # The watch asks every tenant's head on the server in one statement; a
    # tenant whose schema is not made yet fails it, and then every tenant gets
    # a pass of its own, which says what is wrong (ledger.errors: TablesMissing).
    from ledger.tenant_workers import _ServerWatch
    from ledger.tenants import Tenant

    append(pg_url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    ready = Tenant("ready", pg_url)
    missing_url = pg_url.rsplit("schema=", 1)[0] + "schema=t_not_made_yet"
    worker = _Scheduled()
    watch = _ServerWatch(worker, ready)  # type: ignore[arg-type]
    watch.add(ready)
    with psycopg.connect(parse_database_url(pg_url).conninfo(), autocommit=True) as conn:
        watch._probe(conn)
        assert worker.calls == [("ready", 1)]
        watch.add(Tenant("missing", missing_url))
        worker.calls.clear()
        watch._probe(conn)
    assert sorted(worker.calls) == [("missing", None), ("ready", None)]
