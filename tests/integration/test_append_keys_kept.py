"""Data keys kept across appends: a kept Appender (the group writer's) looks up and
unwraps a customer's key once, not once per group; a key made in a transaction
that rolls back, or destroyed by an erasure, is never served from the cache."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

import ledger.keystore.keyring as keyring_module
from ledger.appending.appender import Appender
from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.input import read_items
from ledger.keystore.ciphers import unwrap, wrap
from ledger.keystore.keyring import Keyring
from ledger.keystore.master import master_id
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


def test_a_key_another_writer_made_meanwhile_fails_the_commit_and_the_group_is_decided_again(
    store_url: str, app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between deciding a group (which made a key for the new customer c9) and
    # storing it, another writer gives c9 a key of its own (as its keyring does
    # for an event of c9 it stores). The group's key row then fails its
    # transaction (PostgreSQL: at the commit, where the row was sent): nothing
    # sealed with the losing key is stored, and the group is decided again,
    # sealed with the winner's key.
    append_to_url(store_url, [event("customer.created", "c0", {"card": {"name": "c0"}})])
    ring = _ring(app)
    theirs = os.urandom(32)
    decide = Appender._decide
    raced: list[int] = []

    def racing(self: Appender, *args: Any, **kwargs: Any) -> Any:
        decision = decide(self, *args, **kwargs)
        if not raced:
            raced.append(1)
            with Connection(parse_database_url(store_url)) as other:
                other.execute(
                    "INSERT INTO ledger_keys (customer_id, wrapped, master_id, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (
                        "c9",
                        wrap(ring.master, "c9", theirs, os.urandom),
                        master_id(ring.master),
                        "2026-12-07T00:00:00+00:00",
                    ),
                )
        return decision

    ours = [
        event("customer.created", "c9", {"card": {"name": "Nina"}}),
        event("note.added", "c9", {"note_id": "n9", "text": "private"}),
    ]
    with Appender(app, track_lines=True) as appender:
        # A first group sets the known head: the next session opens with its commit.
        assert _group(appender, _notes(0, 1)).appended == 1
        monkeypatch.setattr(Appender, "_decide", racing)
        report = _group(appender, ours)
    assert raced and report.appended == 2, report
    with Connection(parse_database_url(store_url)) as conn:
        (wrapped,) = conn.fetchall("SELECT wrapped FROM ledger_keys WHERE customer_id = 'c9'")
    assert unwrap(ring.master, "c9", bytes(wrapped[0])) == theirs
    reader = LedgerApplication(parse_database_url(store_url))
    try:
        stored = reader.recorder.select_events(customer_stream_id("c9"))
        envelopes = [reader.mapper.to_domain_event(s).envelope for s in stored]
    finally:
        reader.close()
    assert envelopes[0].data.card["name"] == "Nina"
    assert envelopes[1].data.text == "private"
