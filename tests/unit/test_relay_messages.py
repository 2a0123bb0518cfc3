"""The relay's message encoding, without a database or a broker: a stored row in,
key, value and headers out."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import pytest

from ledger.events import parse_recorded_json
from ledger.reading import StoredRow
from relay.errors import RelayFatal
from relay.messages import _FAST_HEAD, build_message

STREAM = UUID("5b0c6f5e-8a44-5d1c-9a3e-0d8f1c2b3a49")
EVENT_ID = "6f1e3f8e-1c51-4a7e-9f7e-2b1d2e3c4d5e"

ENVELOPE = {
    "type": "note.added",
    "customer_id": "cust-1",
    "occurred_at": "2026-10-01T10:00:00+02:00",
    "actor": {"kind": "user", "id": "u-1", "name": "Maria"},
    "source": "crm-ui",
    "data": {"note_id": "n1", "text": "hello"},
}


def current_layout(customer_id: str = "cust-1") -> bytes:
    """The bytes the mapper stores today: the ledger's fields, then the envelope."""
    head = f'{{"event_id":"{EVENT_ID}","recorded_at":"2026-10-01T08:00:01Z","schema_version":1,'
    body = json.dumps({**ENVELOPE, "customer_id": customer_id}, separators=(",", ":"))
    return head.encode() + body[1:].encode()


def row(state: bytes, position: int = 42) -> StoredRow:
    return StoredRow(position, STREAM, 3, "note.added", state)


def test_the_value_is_the_stored_envelope_plus_its_place_in_the_ledger() -> None:
    key, value, headers = build_message(row(current_layout()))
    assert key == b"cust-1"
    event = parse_recorded_json(value)
    assert (event.position, event.stream_id, event.stream_version) == (42, STREAM, 3)
    assert str(event.event_id) == EVENT_ID and event.data.model_dump()["text"] == "hello"
    assert headers == [
        ("event_id", EVENT_ID.encode()),
        ("type", b"note.added"),
        ("schema_version", b"1"),
        ("position", b"42"),
    ]


def test_a_tenants_message_is_keyed_by_tenant_and_customer_with_a_tenant_header() -> None:
    plain_key, plain_value, plain_headers = build_message(row(current_layout()))
    for state in (current_layout(), json.dumps(json.loads(current_layout())).encode()):
        key, value, headers = build_message(row(state), b"shop-1")
        assert key == b"shop-1/cust-1"
        # The value is the single ledger's; the tenant is a header, after the others.
        assert json.loads(value) == json.loads(plain_value)
        assert headers == [*plain_headers, ("tenant", b"shop-1")]
    assert plain_key == b"cust-1" and "tenant" not in dict(plain_headers)


def test_both_paths_give_the_same_message() -> None:
    state = current_layout()
    assert _FAST_HEAD.match(state)
    # Key order changed: only the slow path (a full decode) reads it.
    reordered = json.dumps(json.loads(state), sort_keys=True).encode()
    assert not _FAST_HEAD.match(reordered)
    fast, slow = build_message(row(state)), build_message(row(reordered))
    assert fast[0] == slow[0] and fast[2] == slow[2]
    assert json.loads(fast[1]) == json.loads(slow[1])


def test_a_quoted_customer_id_is_read_whole() -> None:
    customer = 'Zoë "the" customer'
    key, value, _ = build_message(row(current_layout(customer)))
    assert key == customer.encode()
    assert parse_recorded_json(value).customer_id == customer


def test_trailing_whitespace_is_not_part_of_the_value() -> None:
    _, value, _ = build_message(row(current_layout() + b"\n  "))
    assert value.endswith(b',"stream_version":3}')


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (b"\x00\x01 encrypted", "is not a plain JSON envelope"),
        (b"[1, 2, 3]", "is not a plain JSON envelope"),
        (json.dumps({**ENVELOPE, "event_id": EVENT_ID}).encode(), "is not a plain JSON envelope"),
        (
            json.dumps(
                {**ENVELOPE, "event_id": EVENT_ID, "schema_version": 1, "position": 7}
            ).encode(),
            "has an unexpected shape",
        ),
    ],
)
def test_what_cannot_be_published_is_fatal_and_says_where(state: bytes, reason: str) -> None:
    with pytest.raises(RelayFatal, match=f"position 9 {reason}"):
        build_message(row(state, position=9))


def test_every_message_gets_its_own_event_id_header() -> None:
    other = str(uuid4())
    state = current_layout().replace(EVENT_ID.encode(), other.encode())
    assert dict(build_message(row(state))[2])["event_id"] == other.encode()
