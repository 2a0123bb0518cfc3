"""Read-your-writes: every service that reads a read model first brings it up
to the head as it is now, through `catch_up`."""

from __future__ import annotations

from collections.abc import Sequence

from ledger.db import Connection
from ledger.reading import head_position
from projections import tracking
from projections.base import Projection


def catch_up(conn: Connection, projections: Sequence[Projection]) -> None:
    """Read-your-writes: bring live read models up to the head as it is now.

    Most reads find them current already; that is checked here with two small
    queries, so only a read that has events to apply imports the runner (and,
    with it, psycopg and the event contracts' validators). Anything unusual (no
    tracking row, another layout version, a stopped projection) is the runner's
    to report or handle.

    The merges read model comes along always: every read of a customer's rows
    folds in those of the customers merged into it (projections.merges)."""
    from projections import registry

    merges = registry.get("merges")
    if merges not in projections:
        projections = [*projections, merges]
    found = tracking.read(conn, [p.name for p in projections])
    head = head_position(conn)
    current = all(
        (row := found.get(p.name)) is not None
        and row.version == p.version
        and row.stopped is None
        and row.position >= head
        for p in projections
    )
    if not current:
        from projections.runner import catch_up_live

        catch_up_live(conn, projections)
