"""Operating the ledger: the projections' status, running, following,
rebuilding and resetting them.

Each function takes the projections by name (none: every one) and answers
with plain values; progress goes to the caller's callbacks, and a caller
stops a long run by setting the `threading.Event` it passes (a signal
handler, say).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.config import DatabaseURL
from ledger.db import Connection
from ledger.reading import head_position
from projections import rebuild as replay
from projections import registry
from projections.base import Projection
from projections.loading import DEFAULT_CHECKPOINT_EVENTS
from projections.rebuild import DEFAULT_REBUILD_BATCH_SIZE, RebuildReport
from projections.runner import DEFAULT_BATCH_SIZE, Follower, FollowNotice, Runner, Target
from services.bootstrap import prepare_store
from services.errors import service_errors

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHECKPOINT_EVENTS",
    "DEFAULT_REBUILD_BATCH_SIZE",
    "PROJECTION_NAMES",
    "CatchUpReport",
    "FollowNotice",
    "RebuildReport",
    "catch_up_projections",
    "discard_rebuild",
    "follow_projections",
    "projection_names",
    "projections_status",
    "rebuild_projections",
    "reset_projections",
]

# Every projection's name, in the order they are run and shown.
PROJECTION_NAMES: tuple[str, ...] = tuple(registry.NAMES)


def _chosen(names: Sequence[str]) -> list[Projection]:
    with service_errors():
        return registry.select(names)


def projection_names(names: Sequence[str]) -> list[str]:
    """The projections `names` denotes (none: every one), checked: an unknown
    name is a usage error that lists the known ones."""
    return [p.name for p in _chosen(names)]


def projections_status(conn: Connection) -> dict[str, Any]:
    """`ledger projections status --format json`'s answer."""
    from projections.status import projection_status

    with service_errors():
        head, rows = projection_status(conn, registry.select(()))
    return {"head": head, "projections": [r.as_json() for r in rows]}


# -- running ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CatchUpReport:
    """What one catch-up did: events applied, the position reached, the head
    when it ended, and why any projection stopped at an event it cannot apply."""

    projections: list[str]
    applied: int
    position: int
    head: int
    stopped: list[str]


def catch_up_projections(
    conn: Connection,
    names: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    stop: threading.Event | None = None,
) -> CatchUpReport:
    """Apply every stored event the projections have not seen, a transaction per
    batch together with their position, until the head or until `stop` is set."""
    chosen = _chosen(names)
    with service_errors():
        prepare_store(conn)
        runner = Runner(conn, [Target.live(p) for p in chosen], batch_size)
        applied = runner.catch_up(stop=stop)
        position, head = runner.position(), head_position(conn)
    return CatchUpReport(
        projections=[p.name for p in chosen],
        applied=applied,
        position=position,
        head=head,
        stopped=sorted(runner.stopped.values()),
    )


def follow_projections(
    url: DatabaseURL,
    names: Sequence[str],
    *,
    stop: threading.Event,
    on_notice: Callable[[FollowNotice], None],
    batch_size: int = DEFAULT_BATCH_SIZE,
    interval: float = 1.0,
    max_backoff: float = 30.0,
) -> None:
    """Catch up, then keep applying new events until `stop` is set: woken by
    LISTEN/NOTIFY on PostgreSQL (polling every `interval` s as a fallback),
    polling on SQLite, retrying with back-off while the database is away.
    `on_notice` hears each change of state."""
    follower = Follower(
        url,
        _chosen(names),
        stop=stop,
        notify=on_notice,
        batch_size=batch_size,
        interval=interval,
        max_backoff=max_backoff,
        prepare=prepare_store,
    )
    with service_errors():
        follower.run()


# -- rebuilding -------------------------------------------------------------------------


def rebuild_projections(
    conn: Connection,
    names: Sequence[str],
    *,
    batch_size: int = DEFAULT_REBUILD_BATCH_SIZE,
    checkpoint_events: int = DEFAULT_CHECKPOINT_EVENTS,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_phase: Callable[[str, int], None] | None = None,
) -> RebuildReport:
    """Replay every event into fresh tables, then swap them in atomically
    (resuming a rebuild that was killed). `on_start(head)` is told the head
    before the replay begins, `on_progress(position, events)` after each batch,
    `on_phase(phase, head)` as each phase starts."""
    chosen = _chosen(names)
    with service_errors():
        prepare_store(conn)
        if on_start is not None:
            on_start(head_position(conn))

        def phase(name: str) -> None:
            if on_phase is not None:
                on_phase(name, head_position(conn))

        return replay.rebuild(
            conn,
            chosen,
            batch_size=batch_size,
            checkpoint_events=checkpoint_events,
            progress=on_progress,
            phase=phase,
        )


def discard_rebuild(conn: Connection, names: Sequence[str]) -> list[str]:
    """Drop what an unfinished rebuild of these projections left behind; returns
    the projections it had (none: there was nothing to discard)."""
    chosen = _chosen(names)
    with service_errors():
        prepare_store(conn)
        return replay.discard(conn, chosen)


def reset_projections(conn: Connection, names: Sequence[str]) -> list[str]:
    """Empty read models and set them back to position 0; returns their names."""
    chosen = _chosen(names)
    with service_errors():
        prepare_store(conn)
        replay.reset(conn, chosen)
    return [p.name for p in chosen]
