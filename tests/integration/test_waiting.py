"""The waiting shared by every follower: back-off, and waking on a commit."""

from __future__ import annotations

import threading
import time

from ledger.backoff import Backoff
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.stores.layout import NOTIFY_CHANNEL
from ledger.waiting import ListenWaiter, PollWaiter, waiter_on


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(5.0, first=1.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0


def timed(wait: ListenWaiter | PollWaiter, timeout: float) -> float:
    started = time.monotonic()
    wait.wait(timeout)
    return time.monotonic() - started


def test_a_poll_waits_the_interval_unless_stopped() -> None:
    stop = threading.Event()
    waiter = PollWaiter(stop)
    assert 0.1 <= timed(waiter, 0.1) < 1
    stop.set()
    assert timed(waiter, 10) < 1


def test_a_notification_wakes_the_listener_at_once(pg_url: str) -> None:
    url = parse_database_url(pg_url)
    stop = threading.Event()
    with Connection(url) as listening, Connection(url) as writer:
        waiter = waiter_on(listening, stop)
        assert isinstance(waiter, ListenWaiter)
        # (Not asserted: that an idle wait lasts its whole interval. NOTIFY is per
        # database, not per schema, so other ledgers on the server may wake it.)
        timer = threading.Timer(0.2, lambda: writer.execute(f"NOTIFY {NOTIFY_CHANNEL}"))
        timer.start()
        try:
            assert timed(waiter, 20) < 5
        finally:
            timer.join()
        stop.set()
        assert timed(waiter, 20) < 1


def test_a_waiter_of_its_own_closes_its_connection(pg_url: str) -> None:
    waiter = ListenWaiter.connect(parse_database_url(pg_url), threading.Event())
    raw = waiter._conn
    waiter.close()
    assert raw.closed


def test_sqlite_is_polled(sqlite_url: str) -> None:
    with Connection(parse_database_url(sqlite_url)) as conn:
        assert isinstance(waiter_on(conn, threading.Event()), PollWaiter)
