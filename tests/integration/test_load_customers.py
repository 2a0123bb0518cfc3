"""Loading many customers' states at once (`LedgerApplication.load_customers`):
the same states the repository folds, in two statements a chunk whatever the
number of customers, long streams paged."""

from __future__ import annotations

from typing import Any

import pytest

import ledger.application
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.reading import stream_versions
from tests.factories import append_ok, event
from tests.round_trips import traced


def _history(customer: str, notes: int) -> list[dict[str, Any]]:
    return [
        event("customer.created", customer, {"card": {"name": customer}}),
        event("task.created", customer, {"task_id": f"t-{customer}", "title": "Call back"}),
        *[
            event("note.added", customer, {"note_id": f"{customer}-n{i}", "text": "x"})
            for i in range(notes)
        ],
    ]


def test_states_equal_the_repositorys_snapshots_and_pages_included(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers = [f"c{i}" for i in range(7)]
    for i, customer in enumerate(customers):
        append_ok(app, _history(customer, notes=i * 3))
    # A snapshot in the middle of one stream: loading starts from it.
    app.store_snapshot(Connection(app.url), app.customer("c5"))
    append_ok(app, [event("note.added", "c5", {"note_id": "late", "text": "y"})])
    # Pages smaller than a stream, so streams are split across pages.
    monkeypatch.setattr(ledger.application, "_LOAD_PAGE", 4)
    with Connection(app.url) as conn:
        loaded = app.load_customers(conn, [*customers, "nobody"])
    assert set(loaded) == {*customers, "nobody"}
    for customer in customers:
        state, snapshot_version = loaded[customer]
        expected = app.customer(customer)
        assert state.version == expected.version == 2 + 3 * int(customer[1:]) + (customer == "c5")
        assert state.tasks == expected.tasks == {f"t-{customer}": "pending"}
        assert snapshot_version == (expected.version - 1 if customer == "c5" else 0)
    nobody, version = loaded["nobody"]
    assert (nobody.version, version, nobody.customer_id) == (0, 0, "nobody")


def _every_stateful_type(customer: str, other: str) -> list[dict[str, Any]]:
    """A history with an event of every type that changes a customer's state,
    personal values (sealed when stored) included."""
    visit = {
        "visit_id": f"v:{customer}:1",
        "source": "google",
        "channel": "search",
        "duration_s": 3,
    }
    return [
        event("customer.created", customer, {"card": {"name": "Ann", "phone": "+44 20 7946 0000"}}),
        event("order.created", customer, {"order_id": f"o-{customer}", "status": "new"}),
        event("email.sent", customer, {"message_id": f"e-{customer}", "subject": "Hi Ann"}),
        event("sms.sent", customer, {"message_id": f"s-{customer}", "to": "+447700900123"}),
        event("segment.joined", customer, {"segment_id": "vip"}),
        event("segment.joined", customer, {"segment_id": "news"}),
        event("segment.left", customer, {"segment_id": "news"}),
        event("chat.started", customer, {"dialog_id": f"d-{customer}", "channel": "website"}),
        event("chat.status_changed", customer, {"dialog_id": f"d-{customer}", "status": "closed"}),
        event("task.created", customer, {"task_id": f"t-{customer}", "title": "Call Ann back"}),
        event("task.completed", customer, {"task_id": f"t-{customer}"}),
        event("visit.recorded", customer, visit),
        event("customer.not_duplicate", customer, {"other_customer_id": other, "reason": "ok"}),
        event("customer.erased", customer, {"reason": "asked", "requested_by": "dpo"}),
    ]


def test_every_stateful_type_folds_as_the_repository_does(app: LedgerApplication) -> None:
    append_ok(app, [event("customer.created", "bob", {"card": {"name": "Bob"}})])
    append_ok(app, _every_stateful_type("ann", "bob"))
    merged = [
        event("customer.created", "cy", {"card": {"name": "Cy"}}),
        event("customer.created", "di", {"card": {"name": "Di"}}),
        event("customer.merged", "cy", {"absorbed": ["di"], "reason": "same person"}),
        event("customer.absorbed", "di", {"into": "cy", "reason": "same person"}),
    ]
    append_ok(app, merged)
    with Connection(app.url) as conn:
        loaded = app.load_customers(conn, ["ann", "bob", "cy", "di"])
    for customer_id, (state, _) in loaded.items():
        assert vars(state) == vars(app.customer(customer_id)), customer_id
    ann = loaded["ann"][0]
    assert ann.erased and ann.segments == {"vip"} and ann.dialogs == {"d-ann": "closed"}
    assert (loaded["cy"][0].absorbed, loaded["di"][0].merged_into) == ({"di"}, "cy")


def test_two_hundred_customers_load_in_two_statements(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers = [f"k{i}" for i in range(200)]
    app = LedgerApplication(parse_database_url(pg_url))
    try:
        append_ok(app, [e for c in customers for e in _history(c, notes=1)])
        with traced(monkeypatch) as trace, Connection(app.url) as conn:
            trace.take()
            loaded = app.load_customers(conn, customers)
            trips = trace.take()
    finally:
        app.close()
    assert all(loaded[c][0].version == 3 for c in customers)
    assert len(trips) == 2, "\n".join(trips)


def test_given_the_stored_versions_only_stateful_events_are_read(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers = [f"v{i}" for i in range(5)]
    for i, customer in enumerate(customers):
        # Notes last: only the version says they are there.
        append_ok(app, _history(customer, notes=i + 1))
    app.store_snapshot(Connection(app.url), app.customer("v3"))
    append_ok(app, [event("task.completed", "v3", {"task_id": "t-v3"})])
    read: list[str] = []
    streams_after = ledger.application.streams_after

    def reading(*args: Any, **kw: Any) -> Any:
        rows = streams_after(*args, **kw)
        read.extend(topic for _, _, topic, _, _ in rows)
        return rows

    monkeypatch.setattr(ledger.application, "streams_after", reading)
    with Connection(app.url) as conn:
        versions = stream_versions(conn, [customer_stream_id(c) for c in customers])
        loaded = app.load_customers(conn, customers, versions)
    assert read and "note.added" not in read
    for customer in customers:
        state, _ = loaded[customer]
        assert vars(state) == vars(app.customer(customer)), customer
    assert loaded["v3"][0].tasks == {"t-v3": "completed"}
