"""Read-your-writes (`services.freshness.catch_up`): a read brings its read
models up to the head as it stood when the read began. Beside a live follower
it waits for the follower to apply the events rather than apply them itself,
and only past `FOLLOWER_WAIT_S` does the work on its own."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import projections.runner
from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.reading import head_position
from projections import registry, tracking
from projections.registry import PROJECTIONS
from projections.runner import Runner
from projections.schema import ensure_schema
from projections.targets import Target
from services import freshness
from tests.factories import append_ok as append
from tests.projection_support import history


def _caught_up(app: LedgerApplication, conn: Connection) -> None:
    append(app, history(customers=3, per_customer=4, seed=7))
    ensure_schema(conn)
    Runner(conn, [Target.live(p) for p in PROJECTIONS]).catch_up()


def _counting_catch_ups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = projections.runner.catch_up_live

    def counting(conn: Connection, wanted: Any, *args: Any) -> int:
        calls.append(1)
        return real(conn, wanted, *args)

    monkeypatch.setattr(projections.runner, "catch_up_live", counting)
    return calls


def _positions(conn: Connection, names: list[str]) -> set[int]:
    return {t.position for t in tracking.read(conn, names).values()}


def test_without_a_follower_a_read_applies_what_it_lacks(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Connection(app.url) as conn:
        _caught_up(app, conn)
        append(app, history(customers=2, per_customer=3, seed=8, prefix="later-"))
        calls = _counting_catch_ups(monkeypatch)
        freshness.catch_up(conn, [registry.get("timeline")])
        assert calls == [1]
        assert _positions(conn, ["timeline", "merges"]) == {head_position(conn)}


def test_beside_a_live_follower_a_read_waits_for_it_and_applies_nothing(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Connection(app.url) as conn:
        _caught_up(app, conn)
        tracking.heartbeat(conn, [p.name for p in PROJECTIONS])
        append(app, history(customers=2, per_customer=3, seed=8, prefix="later-"))
        head = head_position(conn)
        calls = _counting_catch_ups(monkeypatch)

        def follower() -> None:
            time.sleep(0.1)
            with Connection(app.url) as own:
                Runner(own, [Target.live(p) for p in PROJECTIONS]).catch_up()

        started = time.monotonic()
        thread = threading.Thread(target=follower)
        thread.start()
        freshness.catch_up(conn, [registry.get("timeline")])
        waited = time.monotonic() - started
        thread.join(10)
        assert calls == []  # the follower applied them
        assert waited >= 0.09
        assert _positions(conn, ["timeline", "merges"]) == {head}


def test_a_follower_that_does_not_apply_in_time_leaves_the_read_to_do_it(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(freshness, "FOLLOWER_WAIT_S", 0.05)
    with Connection(app.url) as conn:
        _caught_up(app, conn)
        tracking.heartbeat(conn, [p.name for p in PROJECTIONS])
        append(app, history(customers=2, per_customer=3, seed=8, prefix="later-"))
        calls = _counting_catch_ups(monkeypatch)
        freshness.catch_up(conn, [registry.get("timeline")])
        assert calls == [1]
        assert _positions(conn, ["timeline", "merges"]) == {head_position(conn)}
