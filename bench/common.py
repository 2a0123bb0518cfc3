"""Shared set-up for benchmarks: a scratch store and generated events."""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from ledger.config import parse_database_url
from ledger.environment import MASTER_KEY_ENV
from ledger.keystore.master import new_master_key_file

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _master_key_for_bench() -> None:
    """PostgreSQL has no embedded master key: a scratch one unless one is given."""
    if os.environ.get(MASTER_KEY_ENV):
        return
    path = Path(tempfile.mkdtemp(prefix="bench-keys-")) / "master.key"
    new_master_key_file(path)
    os.environ[MASTER_KEY_ENV] = str(path)  # children (the CLI) inherit it


@contextmanager
def scratch_store(kind: str, pg_url: str = DEFAULT_PG) -> Iterator[str]:
    """A URL for an empty store: a temp SQLite file, or a fresh PostgreSQL schema."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    _master_key_for_bench()
    base = parse_database_url(pg_url)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in pg_url else "?"
        yield f"{pg_url}{sep}schema={schema}"
    finally:
        with psycopg.connect(base.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def generate_events(
    count: int, customers: int, seed: int = 7, busy: tuple[tuple[str, float], ...] = ()
) -> Iterator[dict[str, Any]]:
    """`count` valid events over `customers` customers (each created first).

    `busy` names customers that get a share of all events, e.g. (("busy-1", 0.1),)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    names = [f"cust-{i}" for i in range(customers)] + [name for name, _ in busy]
    for i, name in enumerate(names):
        yield _event("customer.created", name, {"card": {"name": name}}, start, i)
    weights = [share for _, share in busy]
    rest = 1.0 - sum(weights)
    for n in range(count - len(names)):
        r = rng.random()
        if r < rest:
            cid = names[rng.randrange(customers)]
        else:
            acc, cid = rest, names[-1]
            for name, share in busy:
                acc += share
                if r < acc:
                    cid = name
                    break
        k = rng.random()
        data: dict[str, Any]
        if k < 0.3:
            typ, data = "note.added", {"note_id": f"n{n}", "text": "Called back, all fine."}
        elif k < 0.55:
            typ, data = (
                "call.logged",
                {
                    "call_id": f"c{n}",
                    "direction": "inbound",
                    "result": "answered",
                    "duration_s": rng.randint(0, 900),
                },
            )
        elif k < 0.8:
            typ, data = (
                "visit.recorded",
                {
                    "visit_id": f"v{n}",
                    "source": "google",
                    "channel": "search",
                    "duration_s": rng.randint(1, 600),
                    "pages_viewed": rng.randint(1, 9),
                },
            )
        else:
            typ, data = "sms.sent", {"message_id": f"s{n}", "text": "Your parcel is on its way"}
        yield _event(typ, cid, data, start, len(names) + n)


def _event(typ: str, cid: str, data: dict[str, Any], start: datetime, n: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=n + 1)),
        "type": typ,
        "customer_id": cid,
        "occurred_at": (start + timedelta(seconds=n)).isoformat(),
        "actor": {"kind": "integration", "id": "bench"},
        "source": "bench",
        "data": data,
    }


def write_ndjson(events: Iterator[dict[str, Any]], path: Path) -> int:
    n = 0
    with path.open("w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
            n += 1
    return n


def wait_until_ready(
    port: int, process: subprocess.Popen[bytes], failure: Callable[[], str]
) -> None:
    """Until the `ledger serve` `process` on loopback `port` answers /readyz (at
    most a minute); raises RuntimeError with `failure()` if it exits or never does."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(failure())
        time.sleep(0.1)
