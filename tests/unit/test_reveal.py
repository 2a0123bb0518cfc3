"""Revealing a stored envelope in place (its markers' bytes replaced by their values'
JSON) gives the bytes that decoding, revealing and encoding the whole envelope gives:
what every reader, and the relay's messages on the wire, show. No database: a fixed
key stands in for the keyring."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.personal import (
    TamperedValue,
    _dump,
    _reveal_in_place,
    reveal,
    reveal_json,
    seal_envelope,
)
from tests.factories import TRICKY_VALUES


class FixedKeys:
    """One data key for every customer except the erased ones."""

    def __init__(self, erased: tuple[str, ...] = ()) -> None:
        self.key = AESGCM(b"k" * 32)
        self.erased = erased

    def cipher(self, customer_id: str) -> AESGCM | None:
        return None if customer_id in self.erased else self.key


KEYS = FixedKeys()


def sealed(event_type: str, data: dict[str, Any]) -> bytes:
    envelope = {
        "event_id": "e-1",
        "recorded_at": "2026-10-01T08:00:01Z",
        "schema_version": 1,
        "type": event_type,
        "customer_id": "c-1",
        "source": "crm «ui» \u2028",
        "amount": 1e-05,
        "data": data,
    }
    # Sealing changes the envelope in place: a copy keeps the shared values intact.
    copy = json.loads(json.dumps(envelope))
    return seal_envelope(copy, event_type, "c-1", "e-1", KEYS)  # type: ignore[arg-type]


def decoded_and_encoded(state: bytes, keys: FixedKeys) -> bytes:
    return _dump(reveal_json(json.loads(state), keys))


def cases(value: Any) -> list[bytes]:
    return [
        sealed("customer.created", {"card": {"name": value, "phone": "+49 1", "email": None}}),
        sealed(
            "customer.card_changed",
            {
                "changes": [
                    {"field": "email", "old": value, "new": "a@example.com"},
                    {"field": "name", "new": value, "old": "Anna"},
                ]
            },
        ),
        sealed("note.added", {"note_id": "n-1", "text": value}),
    ]


@pytest.mark.parametrize("value", [v for v in TRICKY_VALUES if v is not None], ids=repr)
@pytest.mark.parametrize("keys", [KEYS, FixedKeys(erased=("c-1",))], ids=["kept", "erased"])
def test_revealing_in_place_gives_the_bytes_of_a_full_decode(value: Any, keys: FixedKeys) -> None:
    for state in cases(value):
        assert b'{"enc":"v1"' in state
        in_place = _reveal_in_place(state, keys)
        assert in_place is not None  # the layout every append writes takes this way
        assert in_place == reveal(state, keys) == decoded_and_encoded(state, keys)  # type: ignore[arg-type]
    if keys is KEYS:
        assert json.loads(reveal(cases(value)[2], keys))["data"]["text"] == value  # type: ignore[arg-type]


def test_a_marker_laid_out_otherwise_is_revealed_the_long_way() -> None:
    state = sealed("note.added", {"note_id": "n-1", "text": "hello"})
    envelope = json.loads(state)
    marker = envelope["data"]["text"]
    envelope["data"]["text"] = {**marker, "note": "a member _seal_value does not write"}
    other = json.dumps(envelope, separators=(",", ":")).encode()
    assert _reveal_in_place(other, KEYS) is None
    assert json.loads(reveal(other, KEYS))["data"]["text"] == "hello"  # type: ignore[arg-type]


def test_a_marker_copied_to_another_field_of_the_event_is_tampering() -> None:
    state = sealed("customer.created", {"card": {"name": "Anna", "phone": "+49 1"}})
    envelope = json.loads(state)
    card = envelope["data"]["card"]
    card["phone"] = card["name"]
    copied = json.dumps(envelope, separators=(",", ":")).encode()
    with pytest.raises(TamperedValue, match=r"tampering: event e-1: data\.card\.phone"):
        reveal(copied, KEYS)  # type: ignore[arg-type]


def test_a_marker_moved_to_another_field_fails_authentication_in_place() -> None:
    state = sealed("customer.created", {"card": {"name": "Anna", "phone": "+49 1"}})
    envelope = json.loads(state)
    card = envelope["data"]["card"]
    card["name"], card["phone"] = card["phone"], card["name"]
    swapped = json.dumps(envelope, separators=(",", ":")).encode()
    with pytest.raises(TamperedValue, match=r"tampering: event e-1: data\.card\.name"):
        _reveal_in_place(swapped, KEYS)
