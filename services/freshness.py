"""Read-your-writes: every service that reads a read model first brings it up
to the head as it is now, through `catch_up`."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ledger.db import Connection
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
    if _current(conn, projections):
        return
    # One catch-up at a time in a process: readers that find the same events
    # unapplied would each read and decode them, and all but one would then
    # find them applied and throw that work away (under a write load, most of
    # a server's CPU). The others wait, then find them applied, or apply only
    # what came since. Not forever: past the wait, a reader catches up itself.
    waited = _catching_up.acquire(timeout=CATCH_UP_WAIT_S)
    try:
        if not waited or not _current(conn, projections):
            from projections.runner import catch_up_live

            catch_up_live(conn, projections)
    finally:
        if waited:
            _catching_up.release()


# How long a reader waits for another's catch-up before doing its own.
CATCH_UP_WAIT_S = 1.0
_catching_up = threading.Lock()


def _current(conn: Connection, projections: Sequence[Projection]) -> bool:
    """Whether every one of `projections` has applied every stored event."""
    found, head = tracking.read_with_head(conn, [p.name for p in projections])
    return all(
        (row := found.get(p.name)) is not None
        and row.version == p.version
        and row.stopped is None
        and row.position >= head
        for p in projections
    )
