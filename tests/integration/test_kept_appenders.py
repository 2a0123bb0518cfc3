"""Appenders kept between appends (`ledger serve`): a request's batch finds the
customers earlier requests loaded, and a state another writer changed since is
brought up to the store's before it is decided on, not stored over."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest

from ledger.appending.appender import Appender
from ledger.application import LedgerApplication
from ledger.input import read_items
from ledger.rights import ALLOW_ALL
from services import appending
from services.appending import KeptAppenders, append_items, keep_appenders, release_appenders
from tests.factories import append_ok, event, ndjson


def _append(app: LedgerApplication, events: list[dict[str, Any]]) -> Any:
    return append_items(app, ALLOW_ALL, read_items(io.StringIO(ndjson(events))))


def _note(customer: str, note_id: str) -> dict[str, Any]:
    return event("note.added", customer, {"note_id": note_id, "text": "x"})


def test_appends_share_a_kept_appender_and_its_customers(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers = [f"c{i}" for i in range(5)]
    append_ok(app, [event("customer.created", c, {"card": {"name": c}}) for c in customers])
    keep_appenders(app, 1)
    loads: list[int] = []
    load = LedgerApplication.load_customers

    def counting(self: LedgerApplication, store: Any, ids: Any, *more: Any) -> Any:
        loads.append(len(ids))
        return load(self, store, ids, *more)

    monkeypatch.setattr(LedgerApplication, "load_customers", counting)
    caught_up: list[list[str]] = []
    catch_up = LedgerApplication.catch_up_customers

    def catching_up(self: LedgerApplication, store: Any, customers: Any, versions: Any) -> None:
        caught_up.append([c.customer_id for c in customers])
        catch_up(self, store, customers, versions)

    monkeypatch.setattr(LedgerApplication, "catch_up_customers", catching_up)
    opened: list[Appender] = []
    init = Appender.__init__

    def opening(self: Appender, *args: Any, **kw: Any) -> None:
        opened.append(self)
        init(self, *args, **kw)

    monkeypatch.setattr(Appender, "__init__", opening)
    try:
        assert _append(app, [_note(c, f"{c}-1") for c in customers]).appended == 5
        assert _append(app, [_note(c, f"{c}-2") for c in customers]).appended == 5
        assert loads == [5]  # the second request found them kept
        # Another writer appends to c0 meanwhile: the kept state of c0 is stale.
        with Appender(app) as other:
            assert other.append(read_items(io.StringIO(ndjson([_note("c0", "x")])))).ok
        report = _append(app, [_note(c, f"{c}-3") for c in customers])
        assert (report.ok, report.appended) == (True, 5)
    finally:
        release_appenders(app)
    assert len(opened) == 2  # the kept one, and the other writer's
    # The other writer loaded c0 (1); the kept appender, a lone writer until then,
    # lost the race on c0 and loaded the five it had changed again. From then on
    # it checks its kept states first (tests/integration/test_append_outside_lock).
    assert loads == [5, 1, 5]
    assert caught_up == []
    assert app.customer("c0").version == 5
    assert all(app.customer(c).version == 4 for c in customers[1:])


def test_a_busy_process_waits_for_its_kept_appender_before_opening_another(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The appender that comes back (with its customers) serves the waiting
    append; only past the wait does an append open one of its own, which is
    closed after and not kept."""
    kept = KeptAppenders(app, 1)
    got: list[Appender] = []
    closed: list[Appender] = []
    close = Appender.close

    def closing(self: Appender) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(Appender, "close", closing)

    def borrow_one() -> None:
        with kept.borrow(ALLOW_ALL, 10) as appender:
            got.append(appender)

    try:
        with kept.borrow(ALLOW_ALL, 10) as first:
            waiting = threading.Thread(target=borrow_one)
            waiting.start()
            time.sleep(0.2)
            assert got == []  # still waiting for the one kept appender
        waiting.join(5)
        assert got == [first]
        monkeypatch.setattr(appending, "BORROW_WAIT_S", 0.05)
        with kept.borrow(ALLOW_ALL, 10) as again:
            assert again is first
            borrow_one()  # waits 0.05 s, then opens its own
        own = got[-1]
        assert own is not first and closed == [own]  # closed after its append
        with kept.borrow(ALLOW_ALL, 10) as after:
            assert after is first
    finally:
        kept.close()
    assert closed == [own, first]
