"""What a runner applies stored events to, and how a projection stops: a `Target`
(a projection, the tables it writes and the tracking row it moves), a `Poison`
(an event it cannot apply) and `ProjectionError`."""

from __future__ import annotations

from dataclasses import dataclass

from projections import tracking
from projections.base import Projection, Tables


class ProjectionError(RuntimeError):
    """A projection cannot run as things stand; the message says what to do."""


@dataclass(frozen=True)
class Poison:
    """A stored event a projection cannot apply (one stored before the contracts
    enforced what every read model can hold, or one a read model refuses)."""

    position: int
    event_id: str
    event_type: str
    reason: str

    def describe(self, name: str) -> str:
        """The line saying where the projection called `name` stopped and why."""
        return (
            f"projection {name} stopped at position {self.position} "
            f"(event_id {self.event_id}, type {self.event_type}): {self.reason}"
        )


@dataclass(frozen=True)
class Target:
    """A projection together with where it writes: live tables or a rebuild's shadow."""

    projection: Projection
    tables: Tables
    tracking_name: str

    @classmethod
    def live(cls, projection: Projection) -> Target:
        """The projection writing its live tables under its own tracking row."""
        return cls(projection, Tables.live(projection.tables), projection.name)

    @classmethod
    def shadow(cls, projection: Projection) -> Target:
        """The projection writing a rebuild's shadow tables, tracked as `NAME~rebuild`."""
        return cls(
            projection,
            Tables.shadow(projection.tables),
            tracking.rebuild_name(projection.name),
        )
