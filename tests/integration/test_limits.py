"""Hardening: what `ledger append` accepts is storable, projectable and printable.

Each hostile input either gets one rejection line naming event, field and reason
with nothing stored, or is stored exactly as sent."""

from __future__ import annotations

import base64
import csv
import io
import json
import zlib
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.chain import GENESIS_HASH, chain_hash
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.events import ContractError, parse_inbound_json
from ledger.events.limits import MAX_EVENT_BYTES, MAX_STORED_BYTES
from ledger.reading import head_position, read_events
from tests.cli_runner import run_ledger
from tests.factories import append_events as append
from tests.factories import append_raw, event, ndjson
from tests.store_support import refuse_on_insert

EID = "6f1e3f8e-1c51-4a7e-9f7e-2b1d2e3c4d5e"


def card(value: str) -> str:
    """A customer.created event's JSON with `value` (raw JSON text) as the card's `v`."""
    raw = json.dumps(event("customer.created", "c1", {"card": {"v": "PLACEHOLDER"}}, event_id=EID))
    return raw.replace('"PLACEHOLDER"', value)


def rejection(raw: str) -> str:
    with pytest.raises(ContractError) as info:
        parse_inbound_json(raw)
    return str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (card('"a\\u0000b"'), "data.card.v: contains a NUL character"),
        (card('{"k\\u0000": 1}'), "data.card.v: key 'k\\x00' contains a NUL character"),
        (card("NaN"), "data.card.v: NaN is not a JSON number; numbers must be finite"),
        (card("-Infinity"), "data.card.v: -Infinity is not a JSON number"),
        (card("1e999"), "data.card.v: number '1e999' is too large; numbers must be finite"),
        (
            card("[1, 0.1000000000000000000001]"),
            "data.card.v[1]: number '0.1000000000000000000001'",
        ),
        (card("9223372036854775808"), "data.card.v: integer outside the 64-bit range"),
        (card("-9223372036854775809"), "data.card.v: integer outside the 64-bit range"),
        (card("[" * 40 + "]" * 40), "(event): nested deeper than 32 levels"),
        (card("[" * 5000 + "]" * 5000), "(event): nested deeper than 32 levels"),
        (card('"' + "x" * MAX_EVENT_BYTES + '"'), "(event): 262,"),
        (card('{"a": 1, "a": 2}'), "data.card.v.a: key given more than once in the same object"),
        (
            card("1").replace(
                '"type": "customer.created"', '"type": "x", "type": "customer.created"'
            ),
            "type: key given more than once",
        ),
    ],
)
def test_free_form_values_beyond_the_stores_limits_are_rejected(raw: str, expected: str) -> None:
    assert expected in rejection(raw)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e.update(customer_id="c\x001"), "customer_id: contains a NUL character"),
        (lambda e: e["actor"].update(id="u\x00"), "actor.id: contains a NUL character"),
        (
            lambda e: e["actor"].update(name="x" * 1001),
            "actor.name: String should have at most 1000",
        ),
        (
            lambda e: e["data"].update(duration_s=2**63),
            "data.duration_s: integer outside the 64-bit range",
        ),
        (
            lambda e: e.update(occurred_at="0001-01-01T00:30:00+01:00"),
            "occurred_at: time must fall within years 1-9999 in UTC",
        ),
        (
            lambda e: e.update(occurred_at="9999-12-31T23:30:00-01:00"),
            "occurred_at: time must fall within years 1-9999 in UTC",
        ),
    ],
)
def test_typed_fields_are_bounded(mutate: Any, expected: str) -> None:
    e = event(
        "call.logged",
        "c1",
        {"call_id": "k1", "direction": "inbound", "result": "answered", "duration_s": 5},
    )
    mutate(e)
    assert expected in rejection(json.dumps(e))


@pytest.mark.parametrize(
    "value",
    ["0.1", "1.5e300", "-0.0", "9223372036854775807", "-9223372036854775808", '"\\\\u0000"'],
)
def test_values_within_the_limits_are_stored_exactly_as_sent(
    app: LedgerApplication, value: str
) -> None:
    report = append_raw(app, card(value) + "\n")
    assert report.ok, report.rejected
    with Connection(app.url) as conn:
        [stored] = read_events(conn, 0, 10)
    assert stored.data.card["v"] == json.loads(value)  # type: ignore[attr-defined]


def test_stored_envelope_is_bounded_by_one_kafka_message() -> None:
    # Numbers can grow when stored (`1e15` is written `1000000000000000.0`): the
    # stored size, not only the size sent, is what is limited.
    big = "[" + ",".join(["1e15"] * 51_000) + "]"
    event_ = parse_inbound_json(card(big))
    assert len(event_.model_dump_json()) + 1024 <= MAX_STORED_BYTES


def test_hostile_event_is_one_rejection_and_nothing_stored(app: LedgerApplication) -> None:
    good = event("customer.created", "c1", {"card": {"name": "Ann"}})
    bad = event("note.added", "c1", {"note_id": "n\x00", "text": "hi"}, event_id=EID)
    report = append(app, [good, bad])
    assert [str(r) for r in report.rejected] == [
        f"line 2 (event_id {EID}, type note.added): data.note_id: contains a NUL character"
    ]
    with Connection(app.url) as conn:
        assert head_position(conn) == 0


def test_same_event_id_with_different_content_is_a_conflict(app: LedgerApplication) -> None:
    first = event("customer.created", "c1", {"card": {"name": "Ann"}}, event_id=EID)
    changed = {**first, "data": {"card": {"name": "Bob"}}}
    # Within one input...
    report = append(app, [first, changed])
    assert [str(r) for r in report.rejected] == [
        f"line 2 (event_id {EID}, type customer.created): event_id: a different event "
        "with this event_id is already earlier in this input"
    ]
    # ...and against what is stored; the same content stays an idempotent duplicate.
    assert append(app, [first]).appended == 1
    report = append(app, [first, changed], skip_invalid=True)
    assert report.duplicates == 1
    assert [str(r) for r in report.rejected] == [
        f"line 2 (event_id {EID}, type customer.created): event_id: a different event "
        "with this event_id is already stored"
    ]
    with Connection(app.url) as conn:
        [stored] = read_events(conn, 0, 10)
    assert stored.data.card == {"name": "Ann"}  # type: ignore[attr-defined]


def _notes_with_one_refused() -> list[dict[str, Any]]:
    events = [event("customer.created", "c1", {"card": {}})]
    events += [event("note.added", "c1", {"note_id": f"n{i}", "text": "x"}) for i in range(5)]
    events[3]["event_id"] = EID
    return events


REFUSED = (
    f"line 4 (event_id {EID}, type note.added): (event): the store refused it: "
    "value refused by policy"
)


@pytest.mark.parametrize("errcode", ["check_violation", "data_exception"])
def test_skip_invalid_rejects_only_the_event_the_store_refuses(pg_url: str, errcode: str) -> None:
    """A store error on one event is that event's rejection; the rest are stored."""
    app = LedgerApplication(parse_database_url(pg_url))
    try:
        refuse_on_insert(pg_url, EID, errcode)
        report = append(app, _notes_with_one_refused(), skip_invalid=True, batch_size=4)
        assert report.appended == 5
        assert [str(r) for r in report.rejected] == [REFUSED]
        with Connection(app.url) as conn:
            notes = [e.data.note_id for e in read_events(conn, 0, 10)[1:]]  # type: ignore[attr-defined]
        assert notes == ["n0", "n1", "n3", "n4"]
    finally:
        app.close()


def test_all_or_nothing_names_the_event_the_store_refuses(pg_url: str) -> None:
    assert run_ledger("db", "migrate", db=pg_url).returncode == 0
    refuse_on_insert(pg_url, EID, "data_exception")
    result = run_ledger(
        "append", "--batch-size", "4", db=pg_url, stdin=ndjson(_notes_with_one_refused())
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [REFUSED]
    assert "nothing stored" in result.stdout
    with Connection(parse_database_url(pg_url)) as conn:
        assert head_position(conn) == 0


def test_input_reader_rejects_what_it_used_to_drop(store_url: str) -> None:
    one = event("customer.created", "c1", {"card": {}})
    cases = {
        json.dumps([one]) + "\n[]": "data after the end of the JSON array",
        json.dumps([one]) + ' {"x": 1}': "data after the end of the JSON array",
        json.dumps([one])[:-1] + ",]": "trailing ',' before ']'",
    }
    for text, expected in cases.items():
        result = run_ledger("append", db=store_url, stdin=text)
        assert result.returncode == 1, (text, result.stdout)
        assert expected in result.stderr and "nothing stored" in result.stderr
        assert len(result.stderr.splitlines()) == 1
    # A UTF-8 byte order mark is skipped.
    result = run_ledger("append", db=store_url, stdin="\ufeff" + ndjson([one]))
    assert result.returncode == 0, result.stderr


def test_deep_nesting_is_a_rejection_line_not_a_crash(sqlite_url: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for text in (deep + "\n", "[" + deep + "]"):
        result = run_ledger("append", db=sqlite_url, stdin=text)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            "line 1 (event_id -, type -): (event): nested deeper than 32 levels of objects "
            "and arrays"
        ]


def test_human_output_escapes_control_characters_and_csv_defuses_formulas(
    store_url: str,
) -> None:
    hostile = "Eve\x1b[2J\r\nforged line\u202e"
    events = [
        event(
            "customer.created",
            "c1",
            {"card": {"name": "Ann"}},
            actor={"kind": "user", "id": "u\x1b]0;x\x07", "name": hostile},
        ),
        event(
            "customer.card_changed",
            "c1",
            {"changes": [{"field": "name\r\n  forged: a -> b", "old": "Ann", "new": "=1+2"}]},
            actor={"kind": "user", "id": "-2+3", "name": "@SUM(A1)"},
        ),
    ]
    assert run_ledger("append", db=store_url, stdin=ndjson(events)).returncode == 0
    for args in (("audit", "history", "--customer", "c1"), ("tab", "c1", "timeline")):
        out = run_ledger(*args, db=store_url)
        assert out.returncode == 0, out.stderr
        for bad in ("\x1b", "\r", "\x07", "\u202e"):
            assert bad not in out.stdout, (args, bad)
        assert not any(line.startswith("forged") for line in out.stdout.splitlines())
        assert not any(line.lstrip().startswith("forged:") for line in out.stdout.splitlines())
    history = run_ledger("audit", "history", "--customer", "c1", db=store_url).stdout
    assert "Eve\\x1b[2J\\x0d\\x0aforged line\\u202e" in history
    csv_out = run_ledger("audit", "history", "--customer", "c1", "--format", "csv", db=store_url)
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert rows[1]["actor_name"] == "'@SUM(A1)"
    assert rows[1]["actor_id"] == "'-2+3"
    assert rows[1]["new"] == '"=1+2"'  # JSON text: starts with a quote, not a formula
    assert rows[0]["position"] == "1"


def test_chain_tells_null_from_empty_and_keeps_earlier_hashes() -> None:
    def link(subject: str | None, event_id: str | None = "e") -> str:
        return chain_hash(GENESIS_HASH, 1, "o", 1, "t", b"{}", event_id, "c", subject)

    assert link(None) != link("")
    assert link(None, None) != link("", "")
    # A row as every ledger stored it before (a card event: NULL subject) keeps its hash.
    assert link(None) == "a07d17dce5e4e86f1d5fe4206423ded6b846eb8f1693aec5ce11e0ad2989e142"


def test_verify_from_head_plus_one_is_nothing_new_and_intact(store_url: str) -> None:
    one = event("customer.created", "c1", {"card": {}})
    assert run_ledger("append", db=store_url, stdin=ndjson([one])).returncode == 0
    result = run_ledger("audit", "verify", "--from", "2", db=store_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("intact up to position 1, head ")
    assert lines[1] == "note: nothing new from position 2"
    assert run_ledger("audit", "verify", "--from", "3", db=store_url).returncode == 2


def test_a_cursor_with_a_huge_number_is_a_bad_cursor(sqlite_url: str) -> None:
    forged = json.dumps([1, 10**30, 10**30, zlib.crc32(b"c1")]).encode()
    cursor = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    result = run_ledger("tab", "c1", "timeline", "--cursor", cursor, db=sqlite_url)
    assert result.returncode == 2
    assert result.stderr == "error: bad cursor: not a cursor this ledger handed out\n"


@pytest.mark.parametrize("tail", [" x", "{"])
def test_data_after_a_faulty_value_is_malformed_json_not_a_crash(tail: str) -> None:
    """Found while making the check cheaper: the fault was named by a parser that
    raised on the trailing data, and the append failed instead of rejecting."""
    assert rejection(card("1e999") + tail).startswith("(json): malformed JSON")
