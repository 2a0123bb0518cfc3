"""Where each read model stands against the head of the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.db import Connection
from ledger.reading import count_after, head_position, recorded_at_after
from projections import tracking
from projections.base import Projection
from projections.clock import now
from projections.following import HEARTBEAT_SECONDS

# A follower that has not beaten for this long is taken for dead.
_FOLLOWER_GRACE = 5 * HEARTBEAT_SECONDS
# A rebuild that has not committed a batch for this long is taken for stopped.
_REBUILD_GRACE = 60.0


@dataclass(frozen=True)
class RebuildStatus:
    """A rebuild's shadow as `status` shows it: its position and phase, events still to
    apply, and whether it committed a batch recently (`active`)."""

    position: int
    phase: str  # loading / indexed
    lag_events: int
    active: bool
    updated_at: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "phase": self.phase,
            "lag_events": self.lag_events,
            "active": self.active,
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class ProjectionStatus:
    """One projection against the head: its position, lag in events and in seconds (how
    long the oldest unapplied event has waited), state, and any rebuild under way."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    state: str
    updated_at: float | None
    rebuild: RebuildStatus | None
    stopped: str | None = None  # why, for a projection stopped at an event

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "head": self.head,
            "lag_events": self.lag_events,
            "lag_seconds": round(self.lag_seconds, 3),
            "state": self.state,
            "updated_at": _iso(self.updated_at),
            "rebuild": self.rebuild.as_json() if self.rebuild else None,
            "stopped": self.stopped,
        }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


class _Lag:
    """Lag lookups, memoised: projections usually share a position."""

    def __init__(self, conn: Connection, head: int) -> None:
        self._conn = conn
        self._head = head
        self._events: dict[int, int] = {}
        self._seconds: dict[int, float] = {}

    def events(self, position: int) -> int:
        if position >= self._head:
            return 0
        if position not in self._events:
            self._events[position] = count_after(self._conn, position)
        return self._events[position]

    def seconds(self, position: int) -> float:
        """How long the oldest event not yet applied has been waiting."""
        if position >= self._head:
            return 0.0
        if position not in self._seconds:
            recorded = recorded_at_after(self._conn, position)
            waited = now() - recorded.timestamp() if recorded else 0.0
            self._seconds[position] = max(0.0, waited)
        return self._seconds[position]


def _state(row: tracking.Tracked, projection: Projection, head: int, moment: float) -> str:
    if row.version != projection.version:
        return "outdated"
    if row.stopped is not None:
        return tracking.STOPPED
    if follower_alive(row, moment):
        return "following"
    return "up to date" if row.position >= head else "behind"


def follower_alive(row: tracking.Tracked, moment: float) -> bool:
    """Whether a follower kept `row` at `moment` (it beat within the grace)."""
    return row.heartbeat_at is not None and moment - row.heartbeat_at < _FOLLOWER_GRACE


def projection_status(
    conn: Connection, projections: Sequence[Projection]
) -> tuple[int, list[ProjectionStatus]]:
    """The head position and the status of each of `projections` that has a tracking row."""
    head = head_position(conn)
    rows = tracking.read_all(conn)
    lag = _Lag(conn, head)
    moment = now()
    result = []
    for projection in projections:
        row = rows.get(projection.name)
        if row is None:
            continue
        shadow = rows.get(tracking.rebuild_name(projection.name))
        rebuild = None
        if shadow is not None:
            rebuild = RebuildStatus(
                position=shadow.position,
                phase=shadow.state,
                lag_events=lag.events(shadow.position),
                active=shadow.updated_at is not None
                and moment - shadow.updated_at < _REBUILD_GRACE,
                updated_at=shadow.updated_at,
            )
        result.append(
            ProjectionStatus(
                name=projection.name,
                position=row.position,
                head=head,
                lag_events=lag.events(row.position),
                lag_seconds=lag.seconds(row.position),
                state=_state(row, projection, head, moment),
                updated_at=row.updated_at,
                rebuild=rebuild,
                stopped=row.stopped,
            )
        )
    return head, result
