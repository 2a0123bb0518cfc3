"""Read-your-writes: every service that reads a read model first brings it up
to the head as it is now, through `catch_up`."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TypeGuard

from ledger.db import Connection
from projections import tracking
from projections.base import Projection
from projections.clock import now


def catch_up(conn: Connection, projections: Sequence[Projection]) -> None:
    """Read-your-writes: bring live read models up to the head as it is now
    (beside a live follower: wait for it to get there).

    Most reads find them current already; that is checked here with one small
    query, so only a read that has events to apply imports the runner (and,
    with it, psycopg and the event contracts' validators). Anything unusual (no
    tracking row, another layout version, a stopped projection) is the runner's
    to report or handle.

    The merges read model comes along always: every read of a customer's rows
    folds in those of the customers merged into it (projections.merges)."""
    from projections import registry

    merges = registry.get("merges")
    if merges not in projections:
        projections = [*projections, merges]
    names = [p.name for p in projections]
    found, head = tracking.read_with_head(conn, names)
    if _current(found, head, projections):
        return
    # A follower applies these events anyway, woken by their commit: waiting for
    # it costs this process nothing, where applying them here (and decoding them
    # a second time) took the interpreter from every other request it serves.
    if _followed(found, projections) and _await_follower(conn, names, projections, head):
        return
    # One catch-up at a time in a process: readers that find the same events
    # unapplied would each read and decode them, and all but one would then
    # find them applied and throw that work away (under a write load, most of
    # a server's CPU). The others wait, then find them applied, or apply only
    # what came since. Not forever: past the wait, a reader catches up itself.
    waited = _catching_up.acquire(timeout=CATCH_UP_WAIT_S)
    try:
        if not waited or not _current(*tracking.read_with_head(conn, names), projections):
            from projections.runner import catch_up_live

            catch_up_live(conn, projections)
    finally:
        if waited:
            _catching_up.release()


# How long a reader waits for another's catch-up before doing its own.
CATCH_UP_WAIT_S = 1.0
_catching_up = threading.Lock()
# How long a reader waits for a live follower to apply what it needs, and how
# often it looks; then it applies the rest itself.
FOLLOWER_WAIT_S = 0.5
FOLLOWER_POLL_S = 0.005


def _current(
    found: dict[str, tracking.Tracked], head: int, projections: Sequence[Projection]
) -> bool:
    """Whether every one of `projections` has applied every event up to `head`."""
    return all(_live(row := found.get(p.name), p) and row.position >= head for p in projections)


def _followed(found: dict[str, tracking.Tracked], projections: Sequence[Projection]) -> bool:
    """Whether a follower keeps every one of `projections` (it beat recently)."""
    from projections.status import follower_alive

    moment = now()
    return all(
        _live(row := found.get(p.name), p) and follower_alive(row, moment) for p in projections
    )


def _live(row: tracking.Tracked | None, projection: Projection) -> TypeGuard[tracking.Tracked]:
    """Whether `row` tracks `projection` in its layout version, not stopped
    (anything else is the runner's to handle)."""
    return row is not None and row.version == projection.version and row.stopped is None


def _await_follower(
    conn: Connection, names: list[str], projections: Sequence[Projection], head: int
) -> bool:
    """Wait for the follower to apply every event up to `head` (those stored
    after it are not this read's to wait for); False past FOLLOWER_WAIT_S."""
    deadline = time.monotonic() + FOLLOWER_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(FOLLOWER_POLL_S)
        if _current(tracking.read(conn, names), head, projections):
            return True
    return False
