"""Replaying history into fresh read models without downtime (blue/green).

A rebuild fills shadow tables (`rm_x__rebuild`, tracked as `NAME~rebuild`)
while the live tables keep answering and keep following:

1. prepare: create the shadow tables with only their keys (or resume a shadow
   a killed rebuild left behind);
2. load: replay every event into them in one pass, written at checkpoints
   (projections.loading);
3. index: build the query indexes in one go, far cheaper than row by row;
4. catch up with what was appended meanwhile;
5. swap: one transaction locks the live and shadow tracking rows, applies the
   last few events, renames live -> `__old` and shadow -> live, and moves the
   live tracking row to the shadow's position. Readers see the old model or
   the new one, never a mix; a live follower's next batch finds its position
   moved and continues from the new one.

Killed at any point before the swap commits, the live read model is untouched
and the shadow stays, to be resumed or discarded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger.db import Connection
from ledger.reading import head_position
from projections import tracking
from projections.base import Projection
from projections.loading import DEFAULT_CHECKPOINT_EVENTS, load
from projections.runner import Progress, Runner
from projections.tables import (
    create_indexes,
    create_table,
    drop_table,
    existing_tables,
    rename_table,
)
from projections.targets import Target

DEFAULT_REBUILD_BATCH_SIZE = 5000
# Batches the swap may apply while holding its locks; the pre-swap catch-up
# leaves far fewer than this under any sane write rate.
_SWAP_BATCHES = 20


@dataclass(frozen=True)
class RebuildReport:
    """What a finished rebuild did: the projections swapped in, those resumed from a
    shadow a killed rebuild left, events applied, the position they stand at and the
    time taken."""

    projections: tuple[str, ...]
    resumed: tuple[str, ...]
    events: int
    position: int
    seconds: float


# Told each phase as it starts: "load", "index", "catch-up", "swap".
PhaseCallback = Callable[[str], None]


def prepare_shadow(conn: Connection, projection: Projection) -> bool:
    """Make sure `projection` has shadow tables to load; True if resuming one."""
    name = tracking.rebuild_name(projection.name)
    with conn.schema_transaction():
        tables = existing_tables(conn)
        row = tracking.read(conn, [name]).get(name)
        if (
            row is not None
            and row.version == projection.version
            and all(s.shadow() in tables for s in projection.tables)
        ):
            return True
        for spec in projection.tables:
            drop_table(conn, spec.old())
            drop_table(conn, spec.shadow())
            create_table(conn, spec, spec.shadow(), indexes=False)
        tracking.replace(conn, name, 0, projection.version, tracking.LOADING)
    return False


def index_shadow(conn: Connection, projection: Projection) -> None:
    """Build the shadow's query indexes once its load is done (phase 3); a no-op unless
    the shadow is still loading, so a resumed rebuild does not build them twice."""
    name = tracking.rebuild_name(projection.name)
    with conn.transaction():
        row = tracking.lock(conn, [name]).get(name)
        if row is None or row.state != tracking.LOADING:
            return
        for spec in projection.tables:
            create_indexes(conn, spec, spec.shadow())
            if conn.kind == "postgresql":
                conn.execute(f"ANALYZE {spec.shadow()}")
        tracking.set_state(conn, name, tracking.INDEXED)


def swap(conn: Connection, projections: Sequence[Projection], batch_size: int) -> int:
    """Atomically put every shadow in place of its live tables; the new position."""
    live = [p.name for p in projections]
    shadows = [tracking.rebuild_name(p.name) for p in projections]
    runner = Runner(conn, [Target.shadow(p) for p in projections], batch_size)
    with conn.transaction():
        locked = tracking.lock(conn, sorted(live + shadows))
        positions = runner.drain(locked, _SWAP_BATCHES)
        tables = existing_tables(conn)
        for projection in projections:
            for spec in projection.tables:
                if spec.name in tables:
                    rename_table(conn, spec.name, spec.old())
                rename_table(conn, spec.shadow(), spec.name)
            position = positions[tracking.rebuild_name(projection.name)]
            tracking.replace(conn, projection.name, position, projection.version, tracking.LIVE)
            tracking.delete(conn, tracking.rebuild_name(projection.name))
    # Dropping a big table takes a while on SQLite: not while holding the swap's lock.
    with conn.transaction():
        for projection in projections:
            for spec in projection.tables:
                drop_table(conn, spec.old())
    return min(positions.values())


def rebuild(
    conn: Connection,
    projections: Sequence[Projection],
    *,
    batch_size: int = DEFAULT_REBUILD_BATCH_SIZE,
    checkpoint_events: int = DEFAULT_CHECKPOINT_EVENTS,
    progress: Progress | None = None,
    phase: PhaseCallback | None = None,
) -> RebuildReport:
    """Rebuild `projections` without downtime, through the phases in the module
    docstring (resuming any shadow a killed rebuild left); the live tables answer
    until the swap."""
    started = time.monotonic()
    if conn.kind == "sqlite":
        # 16 MB of page cache (8x the default) for entity lookups and index
        # builds; 64 MB was no faster and cost 50 MB more at the peak. Bounded,
        # so memory stays flat however many events there are.
        conn.execute("PRAGMA cache_size=-16384")
    resumed = tuple(p.name for p in projections if prepare_shadow(conn, p))
    events = 0
    if phase:
        phase("load")
    events += load(
        conn,
        projections,
        head_position(conn),
        batch_size=batch_size,
        checkpoint_events=checkpoint_events,
        progress=progress,
    )
    if phase:
        phase("index")
    for projection in projections:
        index_shadow(conn, projection)
    if phase:
        phase("catch-up")
    runner = Runner(conn, [Target.shadow(p) for p in projections], batch_size)
    events += runner.catch_up(progress=progress)
    if phase:
        phase("swap")
    position = swap(conn, projections, batch_size)
    return RebuildReport(
        projections=tuple(p.name for p in projections),
        resumed=resumed,
        events=events,
        position=position,
        seconds=time.monotonic() - started,
    )


def discard(conn: Connection, projections: Sequence[Projection]) -> list[str]:
    """Drop the shadows of unfinished rebuilds; the names that had one."""
    dropped = []
    with conn.schema_transaction():
        found = tracking.read(conn, [tracking.rebuild_name(p.name) for p in projections])
        tables = existing_tables(conn)
        for projection in projections:
            shadow_tables = [s.shadow() for s in projection.tables if s.shadow() in tables]
            if tracking.rebuild_name(projection.name) in found or shadow_tables:
                dropped.append(projection.name)
            for table in shadow_tables:
                drop_table(conn, table)
            tracking.delete(conn, tracking.rebuild_name(projection.name))
    return dropped


def reset(conn: Connection, projections: Sequence[Projection]) -> None:
    """Empty the live read models and set them back to position 0 (downtime:
    tabs answer from empty tables until a runner has caught up again)."""
    names = [p.name for p in projections] + [tracking.rebuild_name(p.name) for p in projections]
    with conn.schema_transaction():
        tracking.lock(conn, sorted(names))
        for projection in projections:
            for spec in projection.tables:
                for table in (spec.name, spec.shadow(), spec.old()):
                    drop_table(conn, table)
                create_table(conn, spec, spec.name, indexes=True)
            tracking.replace(conn, projection.name, 0, projection.version, tracking.LIVE)
            tracking.delete(conn, tracking.rebuild_name(projection.name))
