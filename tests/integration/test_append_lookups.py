"""The append path's batched lookups on both stores: lists longer than one SQLite
`IN` chunk (PostgreSQL: one `= ANY` array), new data keys made in multi-row
inserts, and the garbage collector given back after an append."""

from __future__ import annotations

import gc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import lookups
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection, look_up, pg_text_array
from ledger.domain import customer_stream_id
from ledger.reading import read_events
from tests.factories import append_events as append
from tests.factories import event


def _story() -> list[dict[str, object]]:
    return [
        event("customer.created", "c-1", {"card": {"name": "Ann"}}),
        event("order.created", "c-1", {"order_id": "o-1", "status": "new"}),
        event("customer.created", "c-2", {"card": {"name": "Bo"}}),
    ]


def test_lookups_of_more_values_than_one_in_list_find_exactly_the_stored_ones(
    app: LedgerApplication,
) -> None:
    story = _story()
    assert append(app, story).ok
    ids = [str(e["event_id"]) for e in story]
    unknown = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1200)]
    # The stored ones at both ends and in the middle of a long list.
    asked = [ids[0], *unknown[:600], ids[1], *unknown[600:], ids[2]]
    subjects = [f"order:x-{n}" for n in range(700)] + ["order:o-1"]
    # Texts an array literal would misread unquoted or unescaped (PostgreSQL).
    subjects += ['order:"q"', "order:b\\s", "order:{x,y}", "NULL", "", " order:o-1"]
    streams = [customer_stream_id(f"nobody-{n}") for n in range(700)]
    streams += [customer_stream_id("c-2"), customer_stream_id("c-1")]
    with Connection(app.url) as conn:
        # Asked together in one statement, as an append asks them.
        states, owners, versions = look_up(
            conn,
            [
                (lookups.EVENT_STATES, asked),
                (lookups.SUBJECT_OWNERS, subjects),
                (lookups.STREAM_VERSIONS, lookups.stream_keys(conn.kind, streams)),
            ],
        )
        assert set(lookups.states(states)) == set(ids)
        assert lookups.owners(owners) == {"order:o-1": "c-1"}
        assert lookups.versions(versions) == {
            customer_stream_id("c-1"): 2,
            customer_stream_id("c-2"): 1,
        }
        assert look_up(conn, [(lookups.EVENT_STATES, []), (lookups.STREAM_VERSIONS, [])]) == [
            [],
            [],
        ]


# The schema (pg_url) is only read here: one for every example is enough.
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))))
def test_a_text_array_literal_reads_back_as_the_texts_given(pg_url: str, texts: list[str]) -> None:
    """PostgreSQL text holds no NUL (and UTF-8 no lone surrogate); every other
    character, in any place, reads back."""
    with Connection(parse_database_url(pg_url)) as conn:
        [(read,)] = conn.fetchall("SELECT ?::text[]", [pg_text_array(texts)])
    assert read == texts


def test_many_new_customers_in_one_batch_each_get_their_own_key(app: LedgerApplication) -> None:
    """More new customers than one key insert holds (200): every one is stored
    readable, and a second batch finds their keys instead of making new ones."""
    customers = [f"c-{n}" for n in range(450)]
    first = [event("customer.created", c, {"card": {"name": f"N {c}"}}) for c in customers]
    assert append(app, first, batch_size=1000).appended == 450
    notes = [event("note.added", c, {"note_id": f"n-{c}", "text": f"T {c}"}) for c in customers]
    assert append(app, notes, batch_size=1000).appended == 450
    with Connection(app.url) as conn:
        [(keys,)] = conn.fetchall("SELECT COUNT(*) FROM ledger_keys WHERE wrapped IS NOT NULL")
    assert keys == 450
    with Connection(app.url) as conn:
        read = [(e.type, e.customer_id, e.data.model_dump()) for e in read_events(conn, 0, 10_000)]
    texts = {c: data["text"] for t, c, data in read if t == "note.added"}
    names = {c: data["card"]["name"] for t, c, data in read if t == "customer.created"}
    assert texts == {c: f"T {c}" for c in customers}
    assert names == {c: f"N {c}" for c in customers}


def test_the_garbage_collector_is_back_on_after_appends_that_store_or_reject(
    app: LedgerApplication,
) -> None:
    assert gc.isenabled()
    assert append(app, _story()).ok
    assert gc.isenabled() and gc.get_freeze_count() == 0
    rejected = append(app, [event("note.added", "ghost", {"note_id": "n", "text": "x"})])
    assert not rejected.ok
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        append(app, [event("customer.created", "c-9", {"card": {}})])
        assert not gc.isenabled()  # as it was: an append does not switch it on
    finally:
        gc.enable()
