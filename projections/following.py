"""Following the events table live: a `Follower` catches up, then applies new
events as they commit, reconnecting while the database is unavailable, and tells
its caller what happens (`FollowNotice`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ledger.application import first_line
from ledger.backoff import MAX_BACKOFF_S, Backoff
from ledger.config import DatabaseURL
from ledger.db import Connection
from ledger.errors import is_unavailable
from ledger.waiting import ListenWaiter, PollWaiter, Waiter
from projections.base import Projection
from projections.runner import DEFAULT_BATCH_SIZE, Runner
from projections.targets import Target

HEARTBEAT_SECONDS = 2.0


@dataclass(frozen=True)
class FollowNotice:
    """What a `Follower` tells its caller: caught up, database unavailable (and when it
    retries), resumed, stopped, or a projection stopped at an event."""

    kind: Literal["caught_up", "unavailable", "resumed", "stopped", "projection_stopped"]
    position: int | None = None
    error: str | None = None
    retry_in: float | None = None
    applied: int = 0

    def describe(self) -> str:
        """The notice as one line for a log or a terminal."""
        match self.kind:
            case "caught_up":
                return f"caught up at position {self.position} ({self.applied} events applied)"
            case "unavailable":
                return f"database unavailable: {self.error}; retrying in {self.retry_in:.1f} s"
            case "resumed":
                return f"database reachable again; resuming at position {self.position}"
            case "stopped":
                return f"stopped at position {self.position}"
            case "projection_stopped":
                return str(self.error)
        return self.kind


class Follower:
    """Catch up, then follow new events until `stop` is set.

    Any connection failure closes both connections, waits (doubling up to
    `max_backoff`), reconnects and resumes from the tracked positions: the
    database, not this process, remembers where each projection is."""

    def __init__(
        self,
        url: DatabaseURL,
        projections: Sequence[Projection],
        *,
        stop: threading.Event,
        notify: Callable[[FollowNotice], None],
        batch_size: int = DEFAULT_BATCH_SIZE,
        interval: float = 1.0,
        initial_backoff: float = 0.5,
        max_backoff: float = MAX_BACKOFF_S,
        prepare: Callable[[Connection], None] | None = None,
    ) -> None:
        self.url = url
        self.projections = list(projections)
        self.stop = stop
        self.notify = notify
        self.batch_size = batch_size
        self.interval = interval
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        # Run on each new connection before following, e.g. to check the schema.
        self.prepare = prepare

    def run(self) -> None:
        """Follow until `stop` is set, reconnecting with back-off while the database is
        unavailable; any other error is raised. Ends with a "stopped" notice."""
        backoff = Backoff(self.max_backoff, first=self.initial_backoff)
        failed = False
        position: int | None = None
        while not self.stop.is_set():
            try:
                position = self._session(resumed=failed)
                failed = False
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                failed = True
                delay = backoff.next()
                self.notify(FollowNotice("unavailable", error=first_line(exc), retry_in=delay))
                self.stop.wait(delay)
                continue
            backoff.reset()
        self.notify(FollowNotice("stopped", position=position))

    def _tell_stopped(self, runner: Runner, told: set[str]) -> None:
        """One notice per projection that stopped at an event it cannot apply."""
        for name, line in runner.stopped.items():
            if name not in told:
                told.add(name)
                self.notify(FollowNotice("projection_stopped", error=line))

    def _session(self, resumed: bool) -> int:
        """Follow on one pair of connections until stopped or they fail."""
        with Connection(self.url) as conn:
            if self.prepare is not None:
                self.prepare(conn)
            waiter: Waiter = (
                ListenWaiter.connect(self.url, self.stop)
                if conn.kind == "postgresql"
                else PollWaiter(self.stop)
            )
            try:
                # LISTEN is in place before the first catch-up, so no commit
                # between the two goes unnoticed.
                runner = Runner(conn, [Target.live(p) for p in self.projections], self.batch_size)
                if resumed:
                    self.notify(FollowNotice("resumed", position=runner.position()))
                applied = runner.catch_up(stop=self.stop)
                position = runner.position()
                told: set[str] = set()
                self._tell_stopped(runner, told)
                self.notify(FollowNotice("caught_up", position=position, applied=applied))
                beat = 0.0
                while not self.stop.is_set():
                    if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                        runner.heartbeat()
                        beat = time.monotonic()
                    waiter.wait(self.interval)
                    if runner.catch_up(stop=self.stop):
                        position = runner.position()
                    self._tell_stopped(runner, told)
                return position
            finally:
                waiter.close()


class CatchUpPass:
    """One store's projections for a worker that serves many stores: each `run()`
    applies what was stored since the last one (`Runner.catch_up`) and marks the
    projections as followed, on a connection kept open between passes until
    `close()`. A failure is raised; the caller closes the pass and retries later."""

    def __init__(
        self,
        url: DatabaseURL,
        projections: Sequence[Projection],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        prepare: Callable[[Connection], None] | None = None,
    ) -> None:
        self.url = url
        self.projections = list(projections)
        self.batch_size = batch_size
        self.prepare = prepare
        self._stop = threading.Event()
        self._conn: Connection | None = None
        self._told: set[str] = set()

    def stop(self) -> None:
        """Make a running pass end after the batch in hand (thread-safe)."""
        self._stop.set()

    def finish(self) -> None:
        """The same as `stop()`: every batch is its own transaction, so ending
        after one is always clean."""
        self._stop.set()

    def run(self) -> tuple[int, int, list[str]]:
        """Catch up once: (events applied, the position reached, the lines of
        projections that newly stopped at an event they cannot apply)."""
        if self._conn is None:
            conn = Connection(self.url)
            try:
                if self.prepare is not None:
                    self.prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        try:
            runner = Runner(self._conn, [Target.live(p) for p in self.projections], self.batch_size)
            applied = runner.catch_up(stop=self._stop)
            position = runner.position()
            runner.heartbeat()
        except BaseException:
            self.close()
            raise
        stopped = [line for name, line in runner.stopped.items() if name not in self._told]
        self._told.update(runner.stopped)
        return applied, position, stopped

    def close(self) -> None:
        """Close the connection (the next `run()` opens another)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a broken connection may fail to close; it is gone either way
                pass
            self._conn = None
