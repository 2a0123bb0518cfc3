"""A rebuild's one-pass load (projections.loading) on both stores: it builds the
same read models as the live runner applying events one at a time, across
checkpoints that split the lives of tasks, dialogues and e-mails; a load that
dies between checkpoints resumes exactly; an event the read models refuse fails
the rebuild with the live runner's line."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from ledger.reading import head_position
from ledger.rights import ALLOW_ALL
from projections import rebuild as replay
from projections import tracking
from projections.base import Envelope, Projection, Tables, Writer
from projections.registry import PROJECTIONS
from projections.runner import Runner
from projections.schema import ensure_schema
from projections.targets import ProjectionError, Target
from services.customers import erase_customer
from tests.factories import append_ok as append
from tests.factories import event
from tests.projection_support import dump, history, positions, store_unchecked

CHECKPOINT = 97


def _varied_history(app: LedgerApplication) -> int:
    """Every event type, entities changed long after they were created, an erased
    customer; the head position."""
    append(app, history(customers=8, per_customer=90, seed=41))
    append(
        app,
        [
            event("sms.sent", "c1", {"message_id": "s-a", "text": "Parcel"}),
            event("sms.delivered", "c1", {"message_id": "s-a"}),
            event("sms.sent", "c2", {"message_id": "s-b", "to": "+49 30 1"}),
            event("sms.failed", "c2", {"message_id": "s-b", "reason": "no route"}),
            *(
                event("customer.not_duplicate", a, {"other_customer_id": b, "reason": "two"})
                for a, b in [("c1", "c2"), ("c3", "c4"), ("c4", "c3"), ("c1", "c5")]
            ),
            event(
                "customer.not_duplicate",
                "c1",
                {"other_customer_id": "c5", "reason": "oops", "withdrawn": True},
            ),
        ],
    )
    erase_customer(app, ALLOW_ALL, "c3", "asked to", "dpo")
    # Merges: one standing (with a kept card value), one undone.
    append(
        app,
        [
            event(
                "customer.merged",
                "c5",
                {
                    "absorbed": ["c6"],
                    "reason": "one",
                    "keep": {"name": "c6"},
                    "card": {"name": "Kept Name"},
                },
            ),
            event("customer.absorbed", "c6", {"into": "c5", "reason": "one"}),
            event("customer.merged", "c7", {"absorbed": ["c4"], "reason": "one"}),
            event("customer.absorbed", "c4", {"into": "c7", "reason": "one"}),
            event("customer.unmerged", "c7", {"released": "c4", "reason": "two"}),
            event("customer.released", "c4", {"from_customer_id": "c7", "reason": "two"}),
        ],
    )
    append(app, history(customers=4, per_customer=30, seed=42, prefix="late"))
    with Connection(app.url) as conn:
        ensure_schema(conn)
        return head_position(conn)


def _spans_checkpoints(conn: Connection, kind: str) -> bool:
    """Whether some subject of `kind` has events on both sides of a checkpoint."""
    rows = conn.fetchall(
        "SELECT MIN(notification_id), MAX(notification_id) FROM ledger_events "
        "WHERE subject LIKE ? GROUP BY subject",
        (f"{kind}:%",),
    )
    return any((low - 1) // CHECKPOINT != (high - 1) // CHECKPOINT for low, high in rows)


def test_rebuild_equals_the_live_runner_event_by_event(
    app: LedgerApplication, store_url: str
) -> None:
    head = _varied_history(app)
    everything = list(PROJECTIONS)
    with Connection(app.url) as conn:
        types = {r[0] for r in conn.fetchall("SELECT DISTINCT topic FROM ledger_events")}
        assert types >= PROJECTIONS[0].types  # every type
        assert all(_spans_checkpoints(conn, kind) for kind in ("task", "dialog", "email"))
        Runner(conn, [Target.live(p) for p in everything], batch_size=1).catch_up()
        followed = dump(store_url)
        report = replay.rebuild(conn, everything, batch_size=13, checkpoint_events=CHECKPOINT)
    assert report.events == head and report.resumed == ()
    rebuilt = dump(store_url)
    assert rebuilt == followed
    assert len(rebuilt["rm_timeline"]) == head
    # The erased customer's personal cells read as erased in both.
    erased = [r for r in rebuilt["rm_tasks"] if r[1] == "c3"]
    assert erased and {r[4] for r in erased} == {"[erased]"}
    assert set(positions(store_url).values()) == {head}


class _Crash(BaseException):
    """The process dying, as far as the code under test can tell."""


class _CrashingAtFlush(Projection):
    """A registry projection whose writer dies at its `crash_at`-th flush."""

    def __init__(self, inner: Projection, crash_at: int) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.version = inner.version  # type: ignore[misc]
        self.tables = inner.tables  # type: ignore[misc]
        self.types = inner.types  # type: ignore[misc]
        self.flushes = 0
        self.crash_at = crash_at

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        inner, outer = self.inner.writer(db, tables, keys), self

        class Crashing(Writer):
            def add(self, events: Sequence[Envelope]) -> None:
                inner.add(events)

            def flush(self) -> None:
                outer.flushes += 1
                if outer.flushes == outer.crash_at:
                    raise _Crash
                inner.flush()

        return Crashing()


def test_a_load_dying_at_a_checkpoint_resumes_exactly(
    app: LedgerApplication, store_url: str
) -> None:
    head = _varied_history(app)
    everything = list(PROJECTIONS)
    with Connection(app.url) as conn:
        Runner(conn, [Target.live(p) for p in everything]).catch_up()
        followed = dump(store_url)
        # Emails flush after the timeline in a checkpoint: the timeline's rows of
        # the third checkpoint are written, then the transaction dies with them.
        crashing = [
            _CrashingAtFlush(p, crash_at=3) if p.name == "emails" else p for p in everything
        ]
        with pytest.raises(_Crash):
            replay.rebuild(conn, crashing, batch_size=10, checkpoint_events=CHECKPOINT)
        tracked = positions(store_url)
        shadows = {n: p for n, p in tracked.items() if n.endswith(tracking.REBUILD_MARK)}
        assert set(shadows.values()) == {200}  # two checkpoints of 100 (10 batches each)
        [[count]] = conn.fetchall("SELECT COUNT(*) FROM rm_timeline__rebuild")
        assert count == 200  # one row per event up to the position, none of the third
        assert dump(store_url) == followed  # the live models untouched
        report = replay.rebuild(conn, everything, batch_size=10, checkpoint_events=CHECKPOINT)
    assert set(report.resumed) == {p.name for p in everything}
    assert report.events == head - 200
    assert dump(store_url) == followed


def test_an_event_the_read_model_refuses_fails_the_rebuild_with_the_live_line(
    app: LedgerApplication,
) -> None:
    """A visit longer than 64 bits fits no integer column: the lean load cannot
    write it, and the checked runner it hands the batch to names the event."""
    append(app, history(customers=2, per_customer=30, seed=43))
    visit = {"visit_id": "v-old", "source": "(direct)", "channel": "direct"}
    event_id = store_unchecked(app, "visit.recorded", {**visit, "duration_s": 2**70}, stream="old")
    append(app, [event("note.added", "c1", {"note_id": "after", "text": "after"})])
    visits = next(p for p in PROJECTIONS if p.name == "visits")
    with Connection(app.url) as conn:
        ensure_schema(conn)
        live = Runner(conn, [Target.live(visits)])
        live.catch_up()
        [line] = live.stopped.values()
        assert line.startswith(
            f"projection visits stopped at position 61 (event_id {event_id}, "
            "type visit.recorded): does not match its contract: data.duration_s"
        )
        with pytest.raises(ProjectionError) as failed:
            replay.rebuild(conn, [visits], checkpoint_events=CHECKPOINT)
        assert str(failed.value) == line
        # The failed window was rolled back whole; a rerun meets the event again.
        assert tracking.read(conn, ["visits~rebuild"])["visits~rebuild"].position == 0
        with pytest.raises(ProjectionError, match="stopped at position 61"):
            replay.rebuild(conn, [visits], checkpoint_events=CHECKPOINT)
