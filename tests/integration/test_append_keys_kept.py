"""Data keys kept across appends: a kept Appender (the group writer's) looks up and
unwraps a customer's key once, not once per group; a key made in a transaction
that rolls back, or destroyed by an erasure, is never served from the cache."""

from __future__ import annotations

import io
from typing import Any

import pytest

import ledger.keystore.keyring as keyring_module
from ledger.appending.appender import Appender
from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.input import read_items
from ledger.keystore.keyring import Keyring
from services.appending import append_with
from tests.factories import append_to_url, event, ndjson

CUSTOMERS = ["c0", "c1", "c2"]


def _group(appender: Appender, events: list[dict[str, Any]]) -> AppendReport:
    # As the group writer stores a group: skip-invalid, through a kept Appender.
    return append_with(appender, read_items(io.StringIO(ndjson(events))), skip_invalid=True)


def _notes(first: int, count: int) -> list[dict[str, Any]]:
    return [
        event("note.added", CUSTOMERS[i % 3], {"note_id": f"n{i}", "text": "private"})
        for i in range(first, first + count)
    ]


def _ring(app: LedgerApplication) -> Keyring:
    ring = app.ledger_mapper.keyring
    assert ring is not None
    return ring


@pytest.fixture
def unwraps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The customers whose data keys were unwrapped, in order."""
    calls: list[str] = []
    unwrap = keyring_module.unwrap

    def counted(master: bytes, customer_id: str, wrapped: bytes) -> bytes:
        calls.append(customer_id)
        return unwrap(master, customer_id, wrapped)

    monkeypatch.setattr(keyring_module, "unwrap", counted)
    return calls


def test_a_kept_appender_unwraps_each_key_once(
    store_url: str, app: LedgerApplication, unwraps: list[str]
) -> None:
    append_to_url(
        store_url, [event("customer.created", c, {"card": {"name": c}}) for c in CUSTOMERS]
    )
    with Appender(app, track_lines=True) as appender:
        assert _group(appender, _notes(0, 6)).appended == 6
        assert sorted(unwraps) == CUSTOMERS  # looked up and unwrapped once each
        for first in (6, 12, 18):
            assert _group(appender, _notes(first, 6)).appended == 6
    assert sorted(unwraps) == CUSTOMERS  # not again for the later groups


def test_an_erasure_drops_the_kept_key(
    store_url: str, app: LedgerApplication, unwraps: list[str]
) -> None:
    append_to_url(
        store_url, [event("customer.created", c, {"card": {"name": c}}) for c in CUSTOMERS]
    )
    ring = _ring(app)
    with Appender(app, track_lines=True) as appender:
        assert _group(appender, _notes(0, 6)).appended == 6
        erasure = event("customer.erased", "c1", {"reason": "asked", "requested_by": "dpo"})
        assert _group(appender, [erasure]).appended == 1
        assert ring.cipher("c1") is None  # the kept key went with the erasure
        report = _group(appender, _notes(6, 3))
    assert report.appended == 2
    (refused,) = report.rejected
    assert refused.event_type == "note.added" and refused.errors[0].field == "customer_id"


def test_a_key_made_in_a_rolled_back_append_is_not_kept(
    store_url: str, app: LedgerApplication
) -> None:
    ring = _ring(app)
    new = event("customer.created", "new-1", {"card": {"name": "New"}})
    refused = event("note.added", "nobody", {"note_id": "n1", "text": "x"})
    with Appender(app, track_lines=True) as appender:
        # All-or-nothing: the key made for new-1 rolls back with its customer.
        report = appender.append(read_items(io.StringIO(ndjson([new, refused]))))
        assert not report.stored
        assert ring.cipher("new-1") is None
        # The same customer again, now stored: its key is made anew and served.
        assert _group(appender, [new]).appended == 1
        assert ring.cipher("new-1") is not None
