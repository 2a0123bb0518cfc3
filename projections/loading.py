"""A rebuild's load: every event read once, decoded once, written at checkpoints.

Rows are read lean (position, type, stored state) in batches; each row some
projection wants is decoded once to plain values with `pydantic_core.from_json`
(no contract check: stored rows were validated and chained when appended) and
handed to every projection of its type. The projections' writers keep their
rows in memory, entity rows included, so a task or dialogue that changes many
times is written once. A checkpoint writes everything held and moves every
shadow's tracking position to the last event read, in one transaction; tracking
moves nowhere else, so a load killed between checkpoints resumes from the last
one with nothing lost and nothing applied twice. The checkpoint interval
bounds memory.

A batch the lean path cannot take (a projection or the database refuses one of
its events, or a stored value fails authentication) is handed to the checked
runner from the last checkpoint through that batch: it applies what it can and
stops at the event with the same line a live projection would, which fails the
rebuild (resumable) as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ledger.db import Connection
from ledger.errors import is_unavailable
from ledger.keystore.keyring import Keyring
from ledger.reading import LeanRow, read_lean
from projections import tracking
from projections.base import Envelope, Projection, Writer
from projections.runner import Progress, Runner, fewer_collections, relax_durability
from projections.sealing import HeldKeys
from projections.targets import Target
from projections.tracking import PositionMoved

# Events between checkpoints. Measured on 100,000 events (SQLite): 5,000, 50,000
# and 200,000 ran at about the same rate and peaked at 98, 121 and 146 MB; with
# this default a rebuild of 1,000,000 peaked at 150 (PostgreSQL) to 182 MB.
DEFAULT_CHECKPOINT_EVENTS = 50_000


class _LeanFailed(Exception):
    """The lean path could not take the events up to `through`."""

    def __init__(self, through: int) -> None:
        super().__init__(through)
        self.through = through


@contextmanager
def _lean(through: int) -> Iterator[None]:
    """A failure of the lean path becomes _LeanFailed, except the database going
    away and another rebuild moving the positions, which the caller handles."""
    try:
        yield
    except PositionMoved:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise
        raise _LeanFailed(through) from exc


@dataclass
class _Route:
    """One projection's writer, where it starts, and its events of the batch being read."""

    start: int
    writer: Writer
    events: list[Envelope] = field(default_factory=list)


class _Load:
    def __init__(self, conn: Connection, targets: Sequence[Target], starts: dict[str, int]):
        self.conn = conn
        self.ring = HeldKeys(Keyring.for_url(conn.url))
        self.starts = dict(starts)
        self.names = sorted(starts)
        self.routes = [
            _Route(starts[t.tracking_name], t.projection.writer(conn, t.tables, self.ring))
            for t in targets
        ]
        self.by_type: dict[str, list[_Route]] = {}
        for target, route in zip(targets, self.routes, strict=True):
            for event_type in target.projection.types:
                self.by_type.setdefault(event_type, []).append(route)

    def run(
        self, until: int, batch_size: int, checkpoint_events: int, progress: Progress | None
    ) -> int:
        """Load through `until` (at least); the events checkpointed."""
        position = min(self.starts.values())
        pending = committed = 0
        while position < until:
            rows = read_lean(self.conn, position, batch_size)
            if not rows:
                break
            with _lean(through=rows[-1][0]):
                self._take(rows)
            position = rows[-1][0]
            pending += len(rows)
            if progress is not None:
                progress(position, len(rows))
            if pending >= checkpoint_events:
                with _lean(through=position):
                    self._checkpoint(position)
                committed, pending = committed + pending, 0
        if pending:
            with _lean(through=position):
                self._checkpoint(position)
            committed += pending
        return committed

    def _take(self, rows: list[LeanRow]) -> None:
        by_type, ring = self.by_type, self.ring
        for position, event_type, stored in rows:
            routes = by_type.get(event_type)
            if routes is None:
                continue
            e = Envelope.decode_stored(position, event_type, stored, ring)
            for route in routes:
                if position > route.start:
                    route.events.append(e)
        for route in self.routes:
            if route.events:
                route.writer.add(route.events)
                route.events = []

    def _checkpoint(self, position: int) -> None:
        with self.conn.transaction():
            relax_durability(self.conn)
            locked = tracking.lock(self.conn, self.names)
            if {n: locked[n].position for n in self.names} != self.starts:
                raise PositionMoved  # another rebuild of these shadows got there first
            for route in self.routes:
                route.writer.flush()
            for name in self.names:
                tracking.advance(self.conn, name, position)
        self.starts = dict.fromkeys(self.names, position)
        for route in self.routes:
            route.start = position


def load(
    conn: Connection,
    projections: Sequence[Projection],
    until: int,
    *,
    batch_size: int,
    checkpoint_events: int = DEFAULT_CHECKPOINT_EVENTS,
    progress: Progress | None = None,
) -> int:
    """Load the shadows of `projections` from their tracked positions through
    `until` (at least); the events applied."""
    targets = [Target.shadow(p) for p in projections]
    checked = Runner(conn, targets, batch_size)
    total = 0
    with fewer_collections():
        while True:
            starts = {name: row.position for name, row in checked.tracked().items()}
            if min(starts.values()) >= until:
                return total
            try:
                return total + _Load(conn, targets, starts).run(
                    until, batch_size, checkpoint_events, progress
                )
            except PositionMoved:
                continue  # held rows dropped: resume from where the other one left off
            except _LeanFailed as failed:
                total += checked.catch_up(until=failed.through, progress=progress)
