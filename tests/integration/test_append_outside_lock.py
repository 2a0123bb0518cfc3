"""Deciding outside the write lock: an append of one batch validates, loads and
checks while other writers commit, and holds the lock only to insert. What a
concurrent commit changed is decided again: a stream version taken, a data key
made first, a customer's cached state gone stale."""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ledger.appending.appender import Appender
from ledger.appending.deciding import Decider, Decision
from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.db import Connection, Queries
from ledger.input import InputItem, read_items
from ledger.keystore.table import KEYS_TABLE
from ledger.personal import reveal
from ledger.stores.layout import EVENTS_TABLE
from tests.factories import append_ok, event, ndjson


def _append(
    appender: Appender, events: list[dict[str, Any]], *, skip_invalid: bool = False
) -> AppendReport:
    return appender.append(read_items(io.StringIO(ndjson(events))), skip_invalid=skip_invalid)


def _while_deciding(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> list[int]:
    """Run `meanwhile` on another thread in the middle of the next batch decided
    (once), waiting for it at most 10 s; returns the sizes of the batches this
    append decided, in order."""
    decide = Decider._decide
    calls: list[int] = []
    ours: list[Decider] = []

    def deciding(
        self: Decider, batch: list[InputItem], store: Queries, **options: bool
    ) -> Decision:
        decision = decide(self, batch, store, **options)
        if ours and self is not ours[0]:
            return decision  # the other writer's
        ours[:] = [self]
        calls.append(len(batch))
        if len(calls) == 1:
            other = threading.Thread(target=meanwhile)
            other.start()
            other.join(10)
            assert not other.is_alive(), "the other writer waited on this append's lock"
        return decision

    monkeypatch.setattr(Decider, "_decide", deciding)
    return calls


def _created(customer: str) -> dict[str, Any]:
    return event("customer.created", customer, {"card": {"name": customer.title()}})


def _note(customer: str, note_id: str) -> dict[str, Any]:
    return event("note.added", customer, {"note_id": note_id, "text": "x"})


def test_another_writer_commits_while_a_batch_is_decided(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    append_ok(app, [_created("ann"), _created("bob")])
    calls = _while_deciding(monkeypatch, lambda: append_ok(app, [_note("bob", "b1")]))
    with Appender(app) as appender:
        report = _append(appender, [_note("ann", "a1"), _note("ann", "a2")])
    assert (report.ok, report.appended, report.stored) == (True, 2, True)
    assert calls == [2]  # bob's commit touched nothing ann's batch was decided on
    assert app.customer("ann").version == 3 and app.customer("bob").version == 2


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_stream_version_taken_meanwhile_is_decided_again(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch, skip_invalid: bool
) -> None:
    append_ok(app, [_created("ann")])
    calls = _while_deciding(monkeypatch, lambda: append_ok(app, [_note("ann", "other")]))
    # The process's `random` is the caller's (a seeded run): the retry's jitter
    # draws from a generator of its own. (Its state as a whole is no witness:
    # the connection pool draws from it for each new connection's lifetime.)
    drawn: list[str] = []
    for name in ("random", "uniform", "randint", "randrange", "choice", "gauss"):
        real = getattr(random, name)

        def counted(*args: Any, _name: str = name, _real: Any = real, **kwargs: Any) -> Any:
            drawn.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(random, name, counted)
    with Appender(app) as appender:
        report = _append(appender, [_note("ann", "mine")], skip_invalid=skip_invalid)
    assert (report.ok, report.appended) == (True, 1)
    assert len(calls) == 2  # decided again after the insert conflicted
    assert drawn == []
    # Both stored, one after the other, and the report names ours alone.
    assert app.customer("ann").version == 3
    with Connection(app.url) as conn:
        rows = conn.fetchall(
            f"SELECT notification_id, state FROM {EVENTS_TABLE} ORDER BY notification_id"
        )
    assert report.first_position == report.last_position == rows[-1][0]
    assert b'"mine"' in bytes(rows[-1][1]) and b'"other"' in bytes(rows[-2][1])


def test_a_key_another_writer_made_first_keeps_and_the_loser_is_refused(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = {"phone": "+44 20 7946 0000"}
    theirs = event("customer.created", "new", {"card": {"name": "Theirs", **phone}})
    calls = _while_deciding(monkeypatch, lambda: append_ok(app, [theirs]))
    mine = event("customer.created", "new", {"card": {"name": "Mine", **phone}})
    with Appender(app) as appender:
        report = _append(appender, [mine])
    assert len(calls) == 2
    assert report.stored is False and report.appended == 0
    assert [e.code for r in report.rejected for e in r.errors] == ["customer_exists"]
    # The stored event reads with the key stored: the loser's key never was.
    ring = app.ledger_mapper.keyring
    assert ring is not None
    ring.forget()
    with Connection(app.url) as conn:
        (state,) = conn.fetchone(f"SELECT state FROM {EVENTS_TABLE}") or ()
        # The event id is random (and may hold any digits): look for the whole number.
        assert b"7946 0000" not in bytes(state)  # sealed ...
        assert b"7946 0000" in reveal(bytes(state), ring)  # ... with the key stored
        assert conn.fetchall(f"SELECT COUNT(*) FROM {KEYS_TABLE} WHERE customer_id = 'new'") == [
            (1,)
        ]


def test_an_input_rejected_whole_leaves_no_key(app: LedgerApplication) -> None:
    bad = event("note.added", "fresh", {"note_id": "n", "text": 5})
    with Appender(app) as appender:
        report = _append(appender, [_created("fresh"), bad])
    assert report.stored is False and [r.line for r in report.rejected] == [2]
    with Connection(app.url) as conn:
        assert conn.fetchall(f"SELECT COUNT(*) FROM {KEYS_TABLE} WHERE customer_id = 'fresh'") == [
            (0,)
        ]


def test_a_refusal_on_a_stale_cached_state_is_decided_again(app: LedgerApplication) -> None:
    task = {"task_id": "t1", "title": "Call back"}
    append_ok(app, [_created("ann"), event("task.created", "ann", task)])
    with Appender(app) as kept:
        # The kept appender caches ann with the task completed ...
        assert _append(kept, [event("task.completed", "ann", {"task_id": "t1"})]).ok
        # ... another writer reopens it ...
        append_ok(app, [event("task.reopened", "ann", {"task_id": "t1"})])
        # ... and completing it again holds, decided on the stored state.
        report = _append(kept, [event("task.completed", "ann", {"task_id": "t1"})])
        assert (report.ok, report.appended) == (True, 1), report.rejected
        # A refusal that the stored state confirms stands.
        again = _append(kept, [event("task.completed", "ann", {"task_id": "t1"})])
    assert [e.code for r in again.rejected for e in r.errors] == ["task_is_completed"]
    assert app.customer("ann").tasks == {"t1": "completed"}


def test_a_conflict_puts_back_the_states_the_batch_changed_and_loads_no_one(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lost decision's states go back to what they were before it, and the
    next decision applies only what the winner stored: a wide batch that loses
    a race does not load its customers again."""
    customers = [f"c{i}" for i in range(4)]
    append_ok(app, [_created(c) for c in customers])
    loads: list[list[str]] = []
    caught_up: list[list[tuple[str, int]]] = []
    load, catch_up = LedgerApplication.load_customers, LedgerApplication.catch_up_customers

    def counting(self: LedgerApplication, store: Any, ids: Any, *more: Any) -> Any:
        loads.append(sorted(ids))
        return load(self, store, ids, *more)

    def catching_up(self: LedgerApplication, store: Any, behind: Any, versions: Any) -> None:
        caught_up.append([(c.customer_id, c.version) for c in behind])
        catch_up(self, store, behind, versions)

    with Appender(app) as appender:
        assert _append(appender, [_note(c, f"{c}-1") for c in customers]).ok  # all four kept
        # As after a race lost earlier: other writers are about (a lone writer
        # keeps no states to put back, and reloads those of a lost decision).
        monkeypatch.setattr(appender, "_contended_until", float("inf"))
        monkeypatch.setattr(LedgerApplication, "load_customers", counting)
        monkeypatch.setattr(LedgerApplication, "catch_up_customers", catching_up)
        calls = _while_deciding(monkeypatch, lambda: append_ok(app, [_note("c0", "other")]))
        report = _append(appender, [_note("c0", "mine"), _note("c1", "mine")])
        assert (report.ok, report.appended) == (True, 2)
        assert len(calls) == 2  # the insert conflicted on c0's stream, decided again
        # The other writer loaded c0 on its own; this appender loaded no one, and
        # brought c0 back from version 2 (as before the lost decision) to 3.
        assert loads == [["c0"]]
        assert caught_up == [[("c0", 2)]]
        assert _append(appender, [_note("c2", "c2-2"), _note("c3", "c3-2")]).ok
        assert loads == [["c0"]]
    assert [app.customer(c).version for c in customers] == [4, 3, 3, 3]


def test_an_appender_checks_its_kept_states_first_once_it_has_lost_a_race(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone writer decides on its kept states without asking their stored
    versions; a lost race shows another writer about, and from then on stale
    states are brought up to date before deciding, not found by losing again."""
    append_ok(app, [_created("ann"), _created("bob")])
    decided: list[Decider] = []
    decide = Decider._decide

    def counting(
        self: Decider, batch: list[InputItem], store: Queries, **options: bool
    ) -> Decision:
        decided.append(self)
        return decide(self, batch, store, **options)

    monkeypatch.setattr(Decider, "_decide", counting)
    with Appender(app) as kept:
        assert _append(kept, [_note("ann", "a1"), _note("bob", "b1")]).ok  # both kept
        append_ok(app, [_note("ann", "theirs")])
        decided.clear()
        assert _append(kept, [_note("ann", "a2")]).ok
        assert sum(d is kept for d in decided) == 2  # lost the race once, then caught up
        append_ok(app, [_note("bob", "theirs")])
        decided.clear()
        assert _append(kept, [_note("bob", "b2")]).ok
        assert sum(d is kept for d in decided) == 1  # checked first: no race lost
    assert (app.customer("ann").version, app.customer("bob").version) == (4, 4)
