"""Applying stored events to read models: batched catch-up, and live following.

One batch = one read of up to `batch_size` rows after the lowest tracked
position, decoded once, then one transaction that locks the tracking rows,
checks nobody moved them, writes every projection's rows and moves every
position to the batch's last row. Killed at any instant, a projector has
either applied the whole batch or none of it.

Rows are read with `WHERE position > tracked ORDER BY position`: positions
are assigned under the events table's write lock, so nothing can later commit
below a position already seen. Holes (positions never used) need no handling:
the next row is simply the next one present.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import psycopg

from ledger.application import first_line
from ledger.config import DatabaseURL
from ledger.db import Connection, DatabaseUnavailable
from ledger.reading import StoredRow, head_position, read_rows
from ledger.waiting import Backoff, ListenWaiter, PollWaiter, Waiter
from projections import tracking
from projections.base import Envelope, Projection, Tables
from projections.tracking import PositionMoved, Tracked

DEFAULT_BATCH_SIZE = 1000
HEARTBEAT_SECONDS = 2.0

# What "the database went away" looks like from each driver.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """A batch keeps thousands of decoded events alive at once, and with the
    default thresholds the cyclic collector then sweeps the heap over and over
    (measured: half of a rebuild's time). Events hold no reference cycles;
    refcounting frees them, so collecting rarely costs nothing in memory."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def relax_durability(conn: Connection) -> None:
    """PostgreSQL: do not wait for this transaction's WAL flush. A crash may
    lose the last batches, but rows and positions together (the transaction
    stays atomic), so they are simply applied again; read models are derived
    data. SQLite gets the same from synchronous=NORMAL."""
    if conn.kind == "postgresql":
        conn.execute("SET LOCAL synchronous_commit TO OFF")


class ProjectionError(RuntimeError):
    """A projection cannot run as things stand; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """A projection together with where it writes: live tables or a rebuild's shadow."""

    projection: Projection
    tables: Tables
    tracking_name: str

    @classmethod
    def live(cls, projection: Projection) -> Target:
        return cls(projection, Tables.live(projection.tables), projection.name)

    @classmethod
    def shadow(cls, projection: Projection) -> Target:
        return cls(
            projection,
            Tables.shadow(projection.tables),
            tracking.rebuild_name(projection.name),
        )


# Called after each committed batch with (lowest position now, events read).
Progress = Callable[[int, int], None]


class Runner:
    def __init__(
        self,
        conn: Connection,
        targets: Sequence[Target],
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if not targets:
            raise ValueError("nothing to run")
        self.conn = conn
        self.targets = list(targets)
        self.batch_size = batch_size
        self.names = sorted(t.tracking_name for t in self.targets)
        self._types = frozenset().union(*(t.projection.types for t in self.targets))
        # The lowest tracked position as of the last batch (or `position()`).
        self.last_position = 0
        if conn.kind == "sqlite":
            # WAL with synchronous=NORMAL stays atomic and consistent; a power cut
            # may only lose the last batches, which are re-applied from tracking.
            conn.execute("PRAGMA synchronous=NORMAL")

    def tracked(self) -> dict[str, Tracked]:
        found = tracking.read(self.conn, self.names)
        self._check(found)
        return found

    def _check(self, found: dict[str, Tracked]) -> None:
        for target in self.targets:
            row = found.get(target.tracking_name)
            if row is None:
                raise ProjectionError(
                    f"projection {target.tracking_name!r} has no tracking row: "
                    "run `ledger db migrate` (or a rebuild was discarded meanwhile)"
                )
            if row.version != target.projection.version:
                raise ProjectionError(
                    f"projection {target.projection.name!r} holds rows of layout version "
                    f"{row.version}, this code writes version {target.projection.version}: "
                    f"run `ledger projections rebuild {target.projection.name}`"
                )

    def position(self) -> int:
        """The lowest position among the targets: every one has applied up to here."""
        self.last_position = min(t.position for t in self.tracked().values())
        return self.last_position

    def step(self) -> int:
        """Apply one batch; the number of events read, 0 when caught up."""
        while True:
            found = self.tracked()
            positions = {name: t.position for name, t in found.items()}
            self.last_position = min(positions.values())
            rows = read_rows(self.conn, self.last_position, self.batch_size)
            if not rows:
                return 0
            # Decoding happens before the transaction, so the write lock is held
            # only for the writes.
            decoded = self._decode(rows, positions)
            try:
                with self.conn.transaction():
                    relax_durability(self.conn)
                    locked = tracking.lock(self.conn, self.names)
                    self._check(locked)
                    if any(locked[n].position != positions[n] for n in self.names):
                        raise PositionMoved
                    moved = self._apply(rows, decoded, positions)
            except PositionMoved:
                continue  # another runner got there first: re-read from where it left off
            self.last_position = min(moved.values())
            return len(rows)

    def drain(self, locked: dict[str, Tracked], max_batches: int) -> dict[str, int]:
        """Inside the caller's transaction, with `locked` tracking rows: apply
        what is left, at most `max_batches` batches. The new positions."""
        self._check(locked)
        positions = {n: locked[n].position for n in self.names}
        for _ in range(max_batches):
            rows = read_rows(self.conn, min(positions.values()), self.batch_size)
            if not rows:
                break
            positions = self._apply(rows, self._decode(rows, positions), positions)
        return positions

    def catch_up(
        self,
        until: int | None = None,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Apply batches until no event is left (or `until` is reached); events read."""
        total = 0
        with fewer_collections():
            while stop is None or not stop.is_set():
                count = self.step()
                if count == 0:
                    break
                total += count
                if progress is not None:
                    progress(self.last_position, count)
                if until is not None and self.last_position >= until:
                    break
        return total

    def heartbeat(self) -> None:
        tracking.heartbeat(self.conn, self.names)

    def _decode(self, rows: Sequence[StoredRow], positions: dict[str, int]) -> list[Envelope]:
        start = min(positions.values())
        wanted = [(positions[t.tracking_name], t.projection.types) for t in self.targets]
        if all(pos == start for pos, _ in wanted):
            types = self._types
            return [Envelope.decode(row) for row in rows if row.type in types]
        return [
            Envelope.decode(row)
            for row in rows
            if any(row.position > pos and row.type in types for pos, types in wanted)
        ]

    def _apply(
        self, rows: Sequence[StoredRow], decoded: Sequence[Envelope], positions: dict[str, int]
    ) -> dict[str, int]:
        last = rows[-1].position
        by_type: dict[str, list[Envelope]] = {}
        for e in decoded:
            by_type.setdefault(e.event.type, []).append(e)
        moved = dict(positions)
        for target in self.targets:
            name = target.tracking_name
            start = positions[name]
            if last <= start:
                continue
            events = self._events_for(target.projection.types, decoded, by_type, start)
            if events:
                target.projection.apply(self.conn, target.tables, events)
            tracking.advance(self.conn, name, last)
            moved[name] = last
        return moved

    @staticmethod
    def _events_for(
        types: frozenset[str],
        decoded: Sequence[Envelope],
        by_type: dict[str, list[Envelope]],
        start: int,
    ) -> Sequence[Envelope]:
        """The batch's events of `types` after `start`, in position order."""
        if types.issuperset(by_type):
            events: Sequence[Envelope] = decoded
        else:
            groups = [by_type[t] for t in types if t in by_type]
            if len(groups) == 1:
                events = groups[0]
            else:
                events = sorted((e for g in groups for e in g), key=lambda e: e.position)
        if events and events[0].position <= start:
            events = [e for e in events if e.position > start]
        return events


def catch_up_live(
    conn: Connection, projections: Sequence[Projection], batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Read-your-writes: bring live read models up to the head as it is now."""
    runner = Runner(conn, [Target.live(p) for p in projections], batch_size)
    head = head_position(conn)
    if runner.position() >= head:
        return 0
    return runner.catch_up(until=head)


@dataclass(frozen=True)
class FollowNotice:
    kind: Literal["caught_up", "unavailable", "resumed", "stopped"]
    position: int | None = None
    error: str | None = None
    retry_in: float | None = None
    applied: int = 0

    def describe(self) -> str:
        match self.kind:
            case "caught_up":
                return f"caught up at position {self.position} ({self.applied} events applied)"
            case "unavailable":
                return f"database unavailable: {self.error}; retrying in {self.retry_in:.1f} s"
            case "resumed":
                return f"database reachable again; resuming at position {self.position}"
            case "stopped":
                return f"stopped at position {self.position}"
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
        max_backoff: float = 30.0,
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
        backoff = Backoff(self.max_backoff, first=self.initial_backoff)
        failed = False
        position: int | None = None
        while not self.stop.is_set():
            try:
                position = self._session(resumed=failed)
                failed = False
            except UNAVAILABLE_ERRORS as exc:
                failed = True
                delay = backoff.next()
                self.notify(FollowNotice("unavailable", error=first_line(exc), retry_in=delay))
                self.stop.wait(delay)
                continue
            backoff.reset()
        self.notify(FollowNotice("stopped", position=position))

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
                self.notify(FollowNotice("caught_up", position=position, applied=applied))
                beat = 0.0
                while not self.stop.is_set():
                    if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                        runner.heartbeat()
                        beat = time.monotonic()
                    waiter.wait(self.interval)
                    if runner.catch_up(stop=self.stop):
                        position = runner.position()
                return position
            finally:
                waiter.close()
