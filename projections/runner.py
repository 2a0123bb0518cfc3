"""Applying stored events to read models: batched catch-up (`Runner`,
`catch_up_live`); `projections.following` follows new events with it.

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
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from ledger.application import first_line
from ledger.db import Connection
from ledger.errors import is_unavailable
from ledger.events import ContractError
from ledger.personal import TamperedValue
from ledger.reading import StoredRow, head_position, read_rows
from projections import tracking
from projections.base import Envelope, Projection
from projections.targets import Poison, ProjectionError, Target
from projections.tracking import PositionMoved, Tracked

DEFAULT_BATCH_SIZE = 1000


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


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    conn.execute("SAVEPOINT projection_apply")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO SAVEPOINT projection_apply")
        conn.execute("RELEASE SAVEPOINT projection_apply")
        raise
    conn.execute("RELEASE SAVEPOINT projection_apply")


# Called after each committed batch with (lowest position now, events read).
Progress = Callable[[int, int], None]


class Runner:
    """Applies stored events to a set of targets in shared batches, one transaction each
    (see the module docstring). A target that meets an event it cannot apply is
    stopped there while the others go on."""

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
        # The lowest tracked position as of the last batch (or `position()`).
        self.last_position = 0
        # tracking name -> the line saying why it stopped, for those that have.
        self.stopped: dict[str, str] = {}
        if conn.kind == "sqlite":
            # WAL with synchronous=NORMAL stays atomic and consistent; a power cut
            # may only lose the last batches, which are re-applied from tracking.
            conn.execute("PRAGMA synchronous=NORMAL")

    def tracked(self) -> dict[str, Tracked]:
        """The targets' tracking rows, checked: ProjectionError if one is missing or
        holds rows of another layout version than the code writes."""
        found = tracking.read(self.conn, self.names)
        self._check(found)
        return found

    def _running(self, found: dict[str, Tracked]) -> dict[str, int]:
        """Positions of the targets still running; note the stopped ones."""
        positions = {}
        for name, row in found.items():
            if row.stopped is None:
                positions[name] = row.position
            else:
                self.stopped[name] = row.stopped
        return positions

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
        """The lowest position among the running targets (all, if every one stopped):
        each has applied up to here."""
        found = self.tracked()
        running = self._running(found) or {n: t.position for n, t in found.items()}
        self.last_position = min(running.values())
        return self.last_position

    def step(self) -> int:
        """Apply one batch; the number of events read, 0 when caught up."""
        while True:
            positions = self._running(self.tracked())
            if not positions:
                return 0
            self.last_position = min(positions.values())
            rows = read_rows(self.conn, self.last_position, self.batch_size)
            if not rows:
                return 0
            # Decoding happens before the transaction, so the write lock is held
            # only for the writes.
            decoded, poisons = self._decode(rows, positions)
            try:
                with self.conn.transaction():
                    relax_durability(self.conn)
                    locked = tracking.lock(self.conn, self.names)
                    self._check(locked)
                    if self._running(locked) != positions:
                        raise PositionMoved
                    moved = self._apply(rows, decoded, poisons, positions)
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
            positions = self._apply(rows, *self._decode(rows, positions), positions)
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
        """Mark the targets as followed now, so `status` reports them as `following`."""
        tracking.heartbeat(self.conn, self.names)

    def _decode(
        self, rows: Sequence[StoredRow], positions: dict[str, int]
    ) -> tuple[list[Envelope], list[Poison]]:
        """The rows some running target wants, decoded; those that cannot be, as poisons."""
        start = min(positions.values())
        wanted = [
            (positions[t.tracking_name], t.projection.types)
            for t in self.targets
            if t.tracking_name in positions
        ]
        if all(pos == start for pos, _ in wanted):
            types = frozenset().union(*(types for _, types in wanted))
            chosen: Iterable[StoredRow] = (row for row in rows if row.type in types)
        else:
            chosen = (
                row
                for row in rows
                if any(row.position > pos and row.type in types for pos, types in wanted)
            )
        decoded: list[Envelope] = []
        poisons: list[Poison] = []
        for row in chosen:
            try:
                decoded.append(Envelope.decode(row))
            except ContractError as exc:
                reason = f"does not match its contract: {first_line(exc)}"
                poisons.append(Poison(row.position, _event_id(row), row.type, reason))
            except TamperedValue as exc:
                poisons.append(Poison(row.position, _event_id(row), row.type, first_line(exc)))
        return decoded, poisons

    def _apply(
        self,
        rows: Sequence[StoredRow],
        decoded: Sequence[Envelope],
        poisons: Sequence[Poison],
        positions: dict[str, int],
    ) -> dict[str, int]:
        last = rows[-1].position
        by_type: dict[str, list[Envelope]] = {}
        for e in decoded:
            by_type.setdefault(e.type, []).append(e)
        moved = dict(positions)
        for target in self.targets:
            name = target.tracking_name
            start = positions.get(name)
            if start is None or last <= start:
                continue
            types = target.projection.types
            poison = _first_poison(poisons, start, types)
            events = self._events_for(types, decoded, by_type, start)
            if poison is not None:
                events = [e for e in events if e.position < poison.position]
            if events:
                poison = self._apply_or_find_poison(target, events) or poison
            if poison is None:
                tracking.advance(self.conn, name, last)
                moved[name] = last
                continue
            line = poison.describe(target.projection.name)
            if name != target.projection.name:
                # A rebuild's shadow: the rebuild fails (and resumes when rerun).
                raise ProjectionError(line)
            # Everything before the poison is applied; the others go on without it.
            moved[name] = max(start, poison.position - 1)
            tracking.advance(self.conn, name, moved[name])
            tracking.stop(self.conn, name, line)
            self.stopped[name] = line
        return moved

    def _apply_or_find_poison(self, target: Target, events: Sequence[Envelope]) -> Poison | None:
        """Apply `events`; if the read model refuses, apply them one by one up to the
        first it refuses, and return that one."""
        try:
            with _savepoint(self.conn):
                target.projection.apply(self.conn, target.tables, events)
            return None
        except Exception as exc:
            if is_unavailable(exc):
                raise
            # which event: found one by one below
        for e in events:
            try:
                with _savepoint(self.conn):
                    target.projection.apply(self.conn, target.tables, [e])
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                reason = f"{type(exc).__name__}: {first_line(exc)}"
                return Poison(e.position, e.event_id, e.type, reason)
        return None

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


def _first_poison(poisons: Sequence[Poison], after: int, types: frozenset[str]) -> Poison | None:
    return next((p for p in poisons if p.position > after and p.event_type in types), None)


def _event_id(row: StoredRow) -> str:
    try:
        value = json.loads(row.stored).get("event_id")
    except (ValueError, AttributeError, RecursionError):
        return "-"
    return value if isinstance(value, str) else "-"


def catch_up_live(
    conn: Connection, projections: Sequence[Projection], batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Read-your-writes: bring live read models up to the head as it is now."""
    runner = Runner(conn, [Target.live(p) for p in projections], batch_size)
    head = head_position(conn)
    if runner.position() >= head:
        return 0
    return runner.catch_up(until=head)
