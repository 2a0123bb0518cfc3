"""The API when the database goes away, comes back, or is too busy: never a 500.

On a real PostgreSQL server the test's own server sessions are ended (as a
restart ends them, found by the application name this process connects with),
then every path that keeps connections across requests (the library's pool the
appends go through, the group writer, the API's own pool, the metrics
collector) must notice and use a new one: each request after that answers 200.
A store that cannot take a request in time answers 503 with `Retry-After`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger.config import parse_database_url
from ledger.input import READ_CHUNK
from ledger.stores.layout import EVENTS_TABLE
from services.errors import Category, classify
from tests.cli_runner import LEDGER, run_ledger
from tests.conftest import PG_URL
from tests.factories import event
from tests.http_support import serve_in_thread, spawned_children


@pytest.fixture
def app_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """libpq names every connection this process opens from now on: the test ends
    only its own server sessions, never another test's."""
    name = f"outage-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("PGAPPNAME", name)
    return name


def _admin() -> psycopg.Connection[tuple[Any, ...]]:
    # Named apart from the server's sessions, so ending those spares it.
    return psycopg.connect(
        parse_database_url(PG_URL).conninfo(), autocommit=True, application_name="outage-admin"
    )


def _end_sessions(app_name: str) -> int:
    """What a PostgreSQL restart does to the server's idle connections. Each
    session is waited for until it is gone (up to 5 s), as a restarted server
    has ended them all by the time it answers again. How many it ended."""
    with _admin() as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (app_name,),
        ).fetchall()
    # False: gone already (a connection closing on its own meanwhile).
    return sum(1 for (gone,) in ended if gone)


def _created(customer: str) -> dict[str, Any]:
    return event("customer.created", customer, {"card": {"name": customer}})


def _note(customer: str, text: str = "x") -> dict[str, Any]:
    return event("note.added", customer, {"note_id": uuid.uuid4().hex, "text": text})


def _store_up(client: httpx.Client) -> float:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    for family in text_string_to_metric_families(answer.text):
        if family.name == "ledger_store_up":
            return float(family.samples[0].value)
    raise AssertionError("no ledger_store_up in the scrape")


def _warm_up(client: httpx.Client, customers: list[str]) -> None:
    """Every kind of kept connection open: concurrent batches fill the library's
    pool (6 connections), a one-event append starts the group writer, reads and
    a task action use the API's pool, a scrape the metrics collector's."""
    answer = client.post("/v1/events", json=[_created(c) for c in customers])
    assert answer.status_code == 200, answer.text

    def batch(i: int) -> int:
        return client.post(
            "/v1/events", json=[_note(customers[i % 4]) for _ in range(50)]
        ).status_code

    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(batch, range(24))) == {200}
    assert client.post("/v1/events", json=_note(customers[0])).status_code == 200
    assert client.get(f"/v1/customers/{customers[0]}/tabs/timeline").status_code == 200
    assert _store_up(client) == 1


def _statuses(answers: list[httpx.Response]) -> list[int]:
    return [a.status_code for a in answers]


def test_every_request_after_the_servers_sessions_end_succeeds(pg_url: str, app_name: str) -> None:
    customers = [f"c{i}" for i in range(4)]
    with serve_in_thread(pg_url) as client:
        _warm_up(client, customers)
        task = event("task.created", "c0", {"task_id": "t1", "title": "Call", "assignee_id": "u-1"})
        assert client.post("/v1/events", json=task).status_code == 200

        # The first scrape after the database is back reads it afresh.
        assert _end_sessions(app_name) >= 6
        assert _store_up(client) == 1

        _end_sessions(app_name)
        batches = [client.post("/v1/events", json=[_note("c1"), _note("c2")]) for _ in range(8)]
        assert _statuses(batches) == [200] * 8, [a.text for a in batches if a.status_code != 200]
        assert all(a.json()["appended"] == 2 for a in batches)

        _end_sessions(app_name)
        ones = [client.post("/v1/events", json=_note("c3")) for _ in range(8)]
        assert _statuses(ones) == [200] * 8, [a.text for a in ones if a.status_code != 200]
        assert all(a.json()["appended"] == 1 for a in ones)

        _end_sessions(app_name)
        read = client.get("/v1/customers/c1/tabs/timeline", params={"limit": 1000})
        assert read.status_code == 200, read.text
        _end_sessions(app_name)
        done = client.post("/v1/customers/c0/tasks/t1/complete", params={"as": "u-1"})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed"

        # Everything acknowledged is stored, once.
        timeline = client.get("/v1/customers/c3/tabs/timeline", params={"limit": 1000}).json()
        stored = [item["event_id"] for item in timeline["items"]]
        sent = [json.loads(a.request.content)["event_id"] for a in ones]
        assert [stored.count(e) for e in sent] == [1] * len(sent)


def test_a_writer_process_stores_one_event_appends_again_after_its_sessions_end(
    pg_url: str, app_name: str
) -> None:
    # The writer process inherits the server's environment: its sessions carry
    # the same application name, and end with the server's.
    with serve_in_thread(pg_url, append_writer="process") as client:
        assert client.post("/v1/events", json=_created("c0")).status_code == 200
        assert client.post("/v1/events", json=_note("c0")).status_code == 200
        [writer] = spawned_children(os.getpid())
        for _ in range(2):
            before = _database_ports(writer)
            assert before
            _end_sessions(app_name)
            ones = [client.post("/v1/events", json=_note("c0")) for _ in range(8)]
            assert _statuses(ones) == [200] * 8, [a.text for a in ones if a.status_code != 200]
            assert all(a.json()["appended"] == 1 for a in ones)
            # Its sessions were ended, and it stored through new ones.
            assert _database_ports(writer).isdisjoint(before)
        timeline = client.get("/v1/customers/c0/tabs/timeline", params={"limit": 1000}).json()
    assert len(timeline["items"]) == 2 + 16


ESTABLISHED = "01"  # /proc/net/tcp's state column


def _database_ports(pid: int) -> set[int]:
    """The local ports of `pid`'s open TCP connections to PostgreSQL's port (one
    the server ended stays in its table, closing, until the process drops it)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    port = f"{parse_database_url(PG_URL).port:04X}"
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if inode in inodes and remote.endswith(f":{port}") and state == ESTABLISHED:
            ports.add(int(local.split(":")[1], 16))
    return ports


def _busy(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json()["status"] == 503


def _batch(customer: str) -> list[dict[str, Any]]:
    return [_note(customer), _note(customer)]


def test_an_exhausted_pool_answers_503_with_retry_after(pg_url: str, app_name: str) -> None:
    # One pooled connection, waited for at most a second.
    url = f"{pg_url}&pool_size=1&connect_timeout=1"
    schema = parse_database_url(url).schema
    with serve_in_thread(url) as client:
        assert client.post("/v1/events", json=[_created("c1")]).status_code == 200
        with _admin() as holder, holder.transaction():
            # Another writer holds the write lock: the first append waits for it on
            # the pool's only connection, so the second finds none free.
            holder.execute(f'LOCK TABLE "{schema}"."{EVENTS_TABLE}" IN EXCLUSIVE MODE')
            first: list[httpx.Response] = []
            waiting = threading.Thread(
                target=lambda: first.append(client.post("/v1/events", json=_batch("c1")))
            )
            waiting.start()
            _wait_for_lock_waiter(app_name)
            started = time.monotonic()
            busy = client.post("/v1/events", json=_batch("c1"))
            _busy(busy)
            assert "no database connection came free in time" in busy.json()["detail"]
            assert time.monotonic() - started < 10
        waiting.join(30)
        assert [a.status_code for a in first] == [200], [a.text for a in first]
        assert client.post("/v1/events", json=_batch("c1")).status_code == 200


def _wait_for_lock_waiter(app_name: str) -> None:
    _wait_for(app_name, "wait_event_type = 'Lock'")


def _wait_for(app_name: str, condition: str, *params: str) -> None:
    """Until one of the sessions named `app_name` meets `condition`."""
    deadline = time.monotonic() + 30
    with _admin() as admin:
        while True:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity "
                f"WHERE application_name = %s AND {condition}",
                (app_name, *params),
            ).fetchone()
            if row is not None and row[0] >= 1:
                return
            if time.monotonic() > deadline:
                seen = admin.execute(
                    "SELECT state, left(query, 80) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (app_name,),
                ).fetchall()
                raise AssertionError(f"no session of {app_name} with {condition}: {seen}")
            time.sleep(0.02)


def test_a_locked_sqlite_store_answers_503_with_retry_after(sqlite_url: str) -> None:
    url = f"{sqlite_url}?lock_timeout=1"
    with serve_in_thread(url) as client:
        assert client.post("/v1/events", json=[_created("c1")]).status_code == 200
        holder = sqlite3.connect(parse_database_url(url).path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            _busy(client.post("/v1/events", json=_batch("c1")))
            _busy(client.post("/v1/events", json=_note("c1")))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert client.post("/v1/events", json=_batch("c1")).status_code == 200


def test_the_library_s_and_the_pool_s_errors_mean_unavailable() -> None:
    """Typed: each class below is what the eventsourcing library, psycopg or its
    pool raises when the server is gone or no connection is free, wrapped or not."""
    from eventsourcing.persistence import InterfaceError, OperationalError
    from psycopg_pool import PoolTimeout

    gone = psycopg.OperationalError("terminating connection due to administrator command")
    wrapped = OperationalError(str(gone))
    wrapped.__cause__ = gone
    unreachable: list[BaseException] = [
        wrapped,
        InterfaceError("the connection is closed"),
        OperationalError("x"),
        RuntimeError("while appending"),
    ]
    unreachable[-1].__cause__ = wrapped  # anywhere along the causes
    for exc in unreachable:
        known = classify(exc)
        assert known is not None and known.category is Category.UNAVAILABLE, exc
    timeout = PoolTimeout("couldn't get a connection after 5.00 sec")
    pooled = OperationalError(str(timeout))
    pooled.__cause__ = timeout
    for busy in (timeout, pooled):
        known = classify(busy)
        assert known is not None and known.category is Category.UNAVAILABLE
        assert "busy" in known.message, known.message


def test_an_import_whose_session_the_server_ends_exits_3(pg_url: str, tmp_path: Path) -> None:
    """The CLI's documented code for an unreachable database, for the library's
    wrapped error as for the driver's."""
    name = f"outage-cli-{uuid.uuid4().hex[:12]}"
    flag = tmp_path / "go"
    created = json.dumps(_created("c1"))
    # More than one batch and more than the reader's first chunk (it waits for
    # a whole one; an input of one batch is decided before any transaction
    # opens), then the next event only once the server has ended the import's
    # session.
    notes = [json.dumps(_note("c1", text="x" * 4000)) for _ in range(READ_CHUNK // 4000 + 2)]
    late = json.dumps(_note("c1"))
    feed = (
        "import os, sys, time\n"
        f"print({created!r})\n"
        f"print(*{notes!r}, sep='\\n', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.02)\n"
        f"print({late!r})\n"
    )
    feeder = subprocess.Popen([sys.executable, "-c", feed], stdout=subprocess.PIPE)
    assert feeder.stdout is not None
    importer = subprocess.Popen(
        [LEDGER, "--db", pg_url, "append", "--batch-size", "1", "-"],
        stdin=feeder.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PGAPPNAME": name},
    )
    try:
        # The import's write transaction, waiting for its next event (not one of
        # the short transactions of its start): its last statement ended the
        # savepoint its batch was inserted under.
        _wait_for(name, "state = 'idle in transaction' AND query LIKE %s", "%ledger_insert%")
        assert _end_sessions(name) >= 1
    finally:
        flag.touch()
        _, err = importer.communicate(timeout=60)
        feeder.wait(10)
    assert importer.returncode == 3, err
    assert err.startswith("error: database unavailable: ") and len(err.splitlines()) == 1, err
    shown = run_ledger("audit", "history", "--customer", "c1", "--format", "json", db=pg_url)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["count"] == 0
