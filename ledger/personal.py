"""Personal values in stored envelopes: encrypted on append, revealed on read.

The contract (docs/privacy.md) names the personal fields per event type on the
payload classes (`Payload.personal`, `Payload.personal_change`). On append each
non-null personal value is replaced in the stored JSON by a marker object

    {"enc": "v1", "t": "s", "v": "<base64 of nonce + AES-256-GCM ciphertext>"}

holding the JSON of the value, encrypted under the customer's data key with the
event id and the field path (`data.card.email`, `data.changes.0.new`) as
associated data, so a ciphertext moved to another event or field fails
authentication. `t` is "s" when the value was a string: an erased string reads
as "[erased]", any other erased value as null. The marker is encrypted before the
row is chained, so the chain hashes the stored bytes and erasure (destroying the
key) changes nothing stored.

Every reader goes through `reveal`: rows without a marker pass unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.keystore.ciphers import Ciphers
from ledger.keystore.keyring import Keyring
from ledger.payloads import payload_classes

if TYPE_CHECKING:
    from ledger.events import Payload

MARKER = "enc"
VERSION = "v1"
ERASED = "[erased]"
ENCRYPTED = "[encrypted]"
# Cheap test for "anything to reveal here": the marker's first member as the
# mapper writes it (compact JSON).
_MARKER_BYTES = b'{"enc":"v1"'
# A marker's members in the order `_seal_value` writes them.
_MARKER_MEMBERS = [MARKER, "t", "v"]
_ERASED_JSON = json.dumps(ERASED).encode()
_NONCE = 12


class TamperedValue(Exception):
    """A stored personal value fails authentication: moved, altered or forged."""


def is_marker(value: Any) -> bool:
    """Whether `value` is a sealed personal value (an object carrying the marker key)."""
    return isinstance(value, dict) and value.get(MARKER) is not None


# Sealed envelopes are stored as `json.dumps(value, ensure_ascii=False,
# separators=(",", ":"))` writes them (`_json` writes the same bytes faster).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# pydantic's serializer writes the same as that encoder (every string and integer,
# most floats) about four times faster, except small floats: 1e-05 as 0.00001,
# 1.5e-09 as 1.5e-9. Where its output may hold one of those, the encoder writes.
_MAYBE_SMALL_FLOAT = re.compile(rb"e-\d(?!\d)|0\.0000")


# pydantic-core's JSON, imported on first use: a tab read that reveals nothing
# never loads it (its import costs a tenth of such a read).
@cache
def _to_json() -> Callable[[Any], bytes]:
    from pydantic_core import to_json

    return to_json


@cache
def _from_json() -> Callable[[bytes], Any]:
    from pydantic_core import from_json

    return from_json


def _json(value: Any) -> bytes:
    """`value` (JSON types only) as stored: compact, non-ASCII kept."""
    out = _to_json()(value)
    # Substring tests first: the regex alone scans slower than the serializer runs.
    if (b"e-" not in out and b"0.0000" not in out) or _MAYBE_SMALL_FLOAT.search(out) is None:
        return out
    return _ENCODER.encode(value).encode()


def _seal_value(
    cipher: AESGCM, aad: bytes, value: Any, random_bytes: Callable[[int], bytes]
) -> dict[str, str]:
    nonce = random_bytes(_NONCE)
    plain = _json(value)
    box = binascii.b2a_base64(nonce + cipher.encrypt(nonce, plain, aad), newline=False).decode()
    return {MARKER: VERSION, "t": "s" if isinstance(value, str) else "j", "v": box}


def _open_json(cipher: AESGCM | None, aad: bytes, marker: dict[str, Any]) -> bytes:
    """The JSON of the value `marker` holds, as it was sealed (`_json`); an erased
    value as readers see it."""
    if cipher is None:
        return _ERASED_JSON if marker.get("t") == "s" else b"null"
    try:
        if marker.get(MARKER) != VERSION:
            raise ValueError(f"unknown encryption version {marker.get(MARKER)!r}")
        box = base64.b64decode(str(marker["v"]), validate=True)
        return cipher.decrypt(box[:_NONCE], box[_NONCE:], aad)
    except (InvalidTag, ValueError, KeyError) as exc:
        raise _tampered(aad, exc) from None


def _open_value(cipher: AESGCM | None, aad: bytes, marker: dict[str, Any]) -> Any:
    plain = _open_json(cipher, aad, marker)
    try:
        return json.loads(plain)
    except ValueError as exc:
        raise _tampered(aad, exc) from None


def _tampered(aad: bytes, exc: Exception) -> TamperedValue:
    path = aad.split(b"\x00", 1)[1].decode(errors="replace")
    return TamperedValue(
        f"{path}: the encrypted value fails authentication "
        f"({type(exc).__name__}): it was moved from another event or field, or altered"
    )


def _in_event(event_id: str, exc: TamperedValue) -> TamperedValue:
    return TamperedValue(f"tampering: event {event_id}: {exc}")


def _aad(event_id: str, path: str) -> bytes:
    return f"{event_id}\x00{path}".encode()


Visit = Callable[[str, Any], Any]


def _walk_sealed(event_type: str, data: dict[str, Any], visit: Visit) -> None:
    """Apply `visit(path, value)` to every personal value of `data` (append side)."""
    payload = payload_classes().get(event_type)
    if payload is None:
        return
    for name in payload.personal:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                value[key] = visit(f"data.{name}.{key}", item)
        else:
            data[name] = visit(f"data.{name}", value)
    changes = data.get("changes")
    if isinstance(changes, list):
        for i, change in enumerate(changes):
            if isinstance(change, dict) and payload.personal_change(str(change.get("field"))):
                for side in ("old", "new"):
                    if change.get(side) is not None:
                        change[side] = visit(f"data.changes.{i}.{side}", change[side])


def _walk_markers(data: dict[str, Any], visit: Visit) -> None:
    """Apply `visit` to every marker where a personal value can be (read side): the
    reader does not depend on the deployment's list of personal order fields."""
    for name, value in data.items():
        if is_marker(value):
            data[name] = visit(f"data.{name}", value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if is_marker(item):
                    value[key] = visit(f"data.{name}.{key}", item)
        elif name == "changes" and isinstance(value, list):
            for i, change in enumerate(value):
                if isinstance(change, dict):
                    for side in ("old", "new"):
                        if is_marker(change.get(side)):
                            change[side] = visit(f"data.changes.{i}.{side}", change[side])


def _dump(envelope: dict[str, Any]) -> bytes:
    return _json(envelope)


def has_personal(event_type: str, data: Payload | dict[str, Any]) -> bool:
    """Whether `data` holds a personal value: typed (on append) or as stored (the
    read models, which decode stored rows to plain values)."""
    payload = payload_classes().get(event_type)
    if payload is None:
        return False
    if isinstance(data, dict):
        if any(data.get(name) is not None for name in payload.personal):
            return True
        stored_changes: list[dict[str, Any]] = data.get("changes") or []
        return any(payload.personal_change(c["field"]) for c in stored_changes)
    for name in payload.personal:
        if getattr(data, name, None) is not None:
            return True
    # Looked up on the class: a missing attribute on a model instance costs an
    # exception, and this runs for every appended event.
    if "changes" not in payload.model_fields:
        return False
    return any(payload.personal_change(c.field) for c in data.changes)  # type: ignore[attr-defined]


def seal(
    state: bytes,
    event_type: str,
    customer_id: str,
    event_id: str,
    ring: Keyring,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """The stored envelope `state` with its personal values encrypted."""
    return seal_envelope(json.loads(state), event_type, customer_id, event_id, ring, random_bytes)


def seal_envelope(
    envelope: dict[str, Any],
    event_type: str,
    customer_id: str,
    event_id: str,
    ring: Keyring,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """The stored JSON of the decoded envelope `envelope` (changed in place), its
    personal values encrypted: the append path seals the validated event's dict
    before its one serialisation."""
    cipher = ring.cipher(customer_id)
    if cipher is None:
        raise TamperedValue(f"customer {customer_id!r} has no data key (customer is erased)")

    def visit(path: str, value: Any) -> Any:
        return _seal_value(cipher, _aad(event_id, path), value, random_bytes)

    _walk_sealed(event_type, envelope["data"], visit)
    return _dump(envelope)


@dataclass(frozen=True)
class _SealingPlan:
    # The personal fields, in the order seal_envelope seals them, each with its
    # member's start as written (`"name":`).
    fields: tuple[tuple[str, bytes], ...]
    # False for a closed type (ledger.events.shape): it holds no float, so
    # json.dumps writes its JSON as pydantic does (see _json).
    floats: bool
    # Each member's start -> the end of its associated data (after the event id).
    paths: dict[bytes, bytes]


@cache
def _sealing_plan(event_type: str) -> _SealingPlan | None:
    """How `seal_spliced` seals a type's personal values; None when its payload
    has a `changes` list (sealed per change) and takes `seal_envelope`."""
    from ledger.events import INBOUND_MODELS
    from ledger.events.shape import is_closed

    payload = payload_classes().get(event_type)
    if payload is None:
        return _SealingPlan((), floats=True, paths={})
    if "changes" in payload.model_fields:
        return None
    fields = tuple((name, b'"%s":' % name.encode()) for name in payload.personal)
    paths = {key: _aad("", f"data.{name}") for name, key in fields}
    return _SealingPlan(fields, not is_closed(INBOUND_MODELS[event_type]), paths)


# The values `seal_spliced` finds in the JSON as `_json` writes them.
_SPLICED = (str, int, float)


def seal_spliced(
    state: bytes,
    data: Payload,
    event_type: str,
    customer_id: str,
    event_id: str,
    ring: Keyring,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> bytes | None:
    """`seal_envelope` of a new event without decoding its stored JSON `state`
    (`ledger.mapper.stored_state`, written once): each personal value's member
    is replaced in place by its marker, which gives the bytes `seal_envelope`
    writes. None where that is not certain (a dict, a list or a change sealed,
    a member not found exactly once, a small float in the result): the caller
    takes `seal_envelope`.

    A personal field's member (`"name":` and the value's JSON) is in `state`
    once at least, in the payload; found exactly once, that is where it is."""
    plan = _sealing_plan(event_type)
    if plan is None:
        return None
    # (where, member, key, value, its JSON), in seal_envelope's order.
    found: list[tuple[int, bytes, bytes, Any, bytes]] = []
    for name, key in plan.fields:
        value = getattr(data, name, None)
        if value is None:
            continue
        if not isinstance(value, _SPLICED):
            return None  # a card's values are sealed one by one: seal_envelope does it
        plain = _json(value)
        member = key + plain
        at = state.find(member)
        if at < 0 or state.find(member, at + 1) >= 0:
            return None
        found.append((at, member, key, value, plain))
    if not found:
        return state
    spans = sorted(found, key=lambda f: f[0]) if len(found) > 1 else found
    kept: list[bytes] = []
    done = 0
    for at, member, *_ in spans:
        if at < done:
            return None
        kept.append(state[done:at])
        done = at + len(member)
    kept.append(state[done:])
    # A marker holds neither `e-` nor `0.0000`, nor can it complete one.
    if (
        plan.floats
        and (b"e-" in state or b"0.0000" in state)
        and any(_MAYBE_SMALL_FLOAT.search(part) for part in kept)
    ):
        return None  # seal_envelope writes such floats as json.dumps does
    cipher = ring.cipher(customer_id)
    if cipher is None:
        raise TamperedValue(f"customer {customer_id!r} has no data key (customer is erased)")
    markers: dict[bytes, bytes] = {}
    for _, _, key, value, plain in found:  # nonces drawn in seal_envelope's order
        nonce = random_bytes(_NONCE)
        # _aad(event_id, "data.<name>"), its second half written once per type.
        aad = event_id.encode() + plan.paths[key]
        box = binascii.b2a_base64(nonce + cipher.encrypt(nonce, plain, aad), newline=False)
        t = b"s" if isinstance(value, str) else b"j"
        markers[key] = b'%s{"enc":"v1","t":"%s","v":"%s"}' % (key, t, box)
    parts = [kept[0]]
    for i, span in enumerate(spans):
        parts += (markers[span[2]], kept[i + 1])
    return b"".join(parts)


def reveal(state: bytes, ring: Keyring) -> bytes:
    """The stored envelope `state` with personal values decrypted, or shown as
    erased when the customer's key is gone. Raises TamperedValue."""
    if _MARKER_BYTES not in state:
        return state
    revealed = _reveal_in_place(state, ring)
    if revealed is not None:
        return revealed
    envelope = reveal_json(json.loads(state), ring)
    return _dump(envelope)


def _reveal_in_place(state: bytes, ring: Ciphers) -> bytes | None:
    """`reveal` without writing the whole envelope out again: each marker's bytes
    are replaced by its value's JSON. The stored envelope was written by `_json`,
    and so was each sealed value, so this gives the bytes that decoding, revealing
    and encoding the whole envelope gives, at about a third of the cost. None where
    a marker is not laid out as `_seal_value` writes it, or its bytes are not found
    exactly once: the caller then takes that longer way (which also reports what
    is wrong)."""
    envelope = _from_json()(state)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
        return None
    found: list[tuple[str, dict[str, Any]]] = []

    def visit(path: str, value: Any) -> Any:
        found.append((path, value))
        return value

    _walk_markers(envelope["data"], visit)
    if not found:
        return None
    cipher = ring.cipher(str(envelope.get("customer_id")))
    event_id = str(envelope.get("event_id"))
    spans: list[tuple[int, int, bytes]] = []
    for path, marker in found:
        if list(marker) != _MARKER_MEMBERS:
            return None
        members = [str(v).encode() for v in marker.values()]
        written = b'{"%s":"%s","t":"%s","v":"%s"}' % (MARKER.encode(), *members)
        start = state.find(written)
        if start < 0 or state.find(written, start + 1) >= 0:
            return None
        try:
            plain = _open_json(cipher, _aad(event_id, path), marker)
        except TamperedValue as exc:
            raise _in_event(event_id, exc) from None
        spans.append((start, start + len(written), plain))
    spans.sort()
    parts: list[bytes] = []
    done = 0
    for start, end, plain in spans:
        if start < done:
            return None
        parts += (state[done:start], plain)
        done = end
    parts.append(state[done:])
    return b"".join(parts)


def reveal_document(state: bytes, ring: Ciphers) -> dict[str, Any]:
    """The stored envelope `state` decoded to plain values, personal values revealed:
    `reveal` without writing the JSON back out (a reader that wants the values)."""
    envelope: dict[str, Any] = _from_json()(state)
    return reveal_json(envelope, ring) if _MARKER_BYTES in state else envelope


def reveal_json(envelope: dict[str, Any], ring: Ciphers | None) -> dict[str, Any]:
    """`reveal` on a decoded envelope (changed in place and returned). Without a
    keyring (a reader without the keys) personal values read as "[encrypted]"."""
    customer_id = str(envelope.get("customer_id"))
    event_id = str(envelope.get("event_id"))
    cipher: list[AESGCM | None] = []

    def visit(path: str, value: Any) -> Any:
        if ring is None:
            return ENCRYPTED if value.get("t") == "s" else None
        if not cipher:
            cipher.append(ring.cipher(customer_id))
        try:
            return _open_value(cipher[0], _aad(event_id, path), value)
        except TamperedValue as exc:
            raise _in_event(event_id, exc) from None

    data = envelope.get("data")
    if isinstance(data, dict):
        _walk_markers(data, visit)
    return envelope
