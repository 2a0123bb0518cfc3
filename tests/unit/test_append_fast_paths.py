"""The append path's shortcuts decide exactly what the long ways decide.

- The quick limits check (`ledger.events.shape`, `limits.keys_match`): every
  event parses, or is rejected with the same field and reason, as when the full
  check runs first; and the invariant it relies on, every integer of every
  contract bounded within 64 bits by its own constraints.
- Sealing spliced into the stored JSON (`personal.seal_spliced`) writes the bytes
  sealing the decoded envelope writes, with the same nonces.
"""

from __future__ import annotations

import json
import random
import types
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ledger.domain import Customer, customer_stream_id
from ledger.events import INBOUND_MODELS, ContractError, parse_inbound_json
from ledger.events.catalogue import _envelopes, _field_errors, _in_current_version, _peek_type_raw
from ledger.events.limits import LimitError, check_event_json
from ledger.events.shape import int_is_bounded, is_closed
from ledger.mapper import stored_document, stored_state
from ledger.personal import seal_envelope, seal_spliced
from tests.factories import TRICKY_VALUES, event
from tests.unit.test_reveal import KEYS

EID = "6f1e3f8e-1c51-4a7e-9f7e-2b1d2e3c4d5e"


def _visit(**data: Any) -> dict[str, Any]:
    base = {"visit_id": "v1", "source": "google", "channel": "search", "duration_s": 3}
    return event("visit.recorded", "c1", {**base, **data}, event_id=EID)


def _long_way(raw: str) -> Any:
    """What parsing did before the quick check: the full limits check first."""
    try:
        check_event_json(raw)
        return _envelopes().inbound_adapter.validate_json(_in_current_version(raw))
    except LimitError as exc:
        return [(exc.field, exc.reason)]
    except ValidationError as exc:
        return [(e.field, e.reason) for e in _field_errors(exc, _peek_type_raw(raw))]


def _short_way(raw: str) -> Any:
    try:
        return parse_inbound_json(raw)
    except ContractError as exc:
        return [(e.field, e.reason) for e in exc.errors]


HOSTILE = [
    # A key given twice: plainly, after whitespace, behind an escaped quote.
    json.dumps(_visit()).replace('"source": "crm-ui"', '"source": "x", "source": "crm-ui"'),
    json.dumps(_visit()).replace('"source": "crm-ui"', '"source" : "x", "source": "crm-ui"'),
    json.dumps(_visit()).replace('"source": "crm-ui"', '"source"\t:"x","source":"crm-ui"'),
    json.dumps(_visit(site='say \\"a":')).replace(
        '"visit_id": "v1"', '"visit_id": "v0", "visit_id": "v1"'
    ),
    json.dumps(_visit(site=":x")).replace(
        '"channel": "search"', '"channel": "x", "channel": "search"'
    ),
    json.dumps(_visit(site='a":b')),
    json.dumps(_visit(utm={"source": "n"})).replace(
        '"source": "n"', '"source": "n", "source": "m"'
    ),
    json.dumps(_visit()).replace('"kind": "user"', '"kind": "api", "kind": "user"'),
    # Numbers a float cannot keep, in an integer field; integers beyond 64 bits.
    json.dumps(_visit()).replace('"duration_s": 3', '"duration_s": 3.0000000000000000001'),
    json.dumps(_visit()).replace('"duration_s": 3', '"duration_s": 3e0'),
    json.dumps(_visit()).replace('"duration_s": 3', '"duration_s": 1e999'),
    json.dumps(_visit()).replace('"duration_s": 3', '"duration_s": NaN'),
    json.dumps(_visit()).replace('"duration_s": 3', '"duration_s": 9223372036854775808'),
    json.dumps(_visit()).replace('"duration_s": 3', '"duration_s": 9223372036854775807'),
    json.dumps(_visit(pages_viewed=None)).replace("null", "-Infinity"),
    # NUL characters, a version named, keys given twice with a contract error too.
    json.dumps(_visit(site="a\x00b")),
    json.dumps(_visit(site="a\\u0000b")),
    json.dumps({**_visit(), "schema_version": 2}).replace('"v1"', '"v1", "visit_id": "v2"'),
    json.dumps(_visit(channel="nope")).replace('"source": "crm-ui"', '"source": 1, "source": "x"'),
    # Plain events, stored as sent.
    json.dumps(_visit(site=" : spaced", utm={"campaign": "spring"})),
    json.dumps(_visit(site="«Zoë» \u2028 😀")),
    json.dumps(_visit(), separators=(",", ":")),
    json.dumps(_visit(), indent=2),
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_quick_limits_check_decides_as_the_full_check(raw: str) -> None:
    assert _short_way(raw) == _long_way(raw)


def test_a_key_given_twice_is_named_on_closed_types() -> None:
    raw = json.dumps(_visit()).replace('"channel": "search"', '"channel": "x", "channel": "search"')
    with pytest.raises(ContractError, match=r"data\.channel: key given more than once"):
        parse_inbound_json(raw)
    assert is_closed(INBOUND_MODELS["visit.recorded"])


def _ints(tp: Any, metadata: list[Any], where: str) -> list[tuple[str, list[Any]]]:
    """Every int in annotation `tp`, with the constraints that apply to it."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        extra = [
            m for a in tp.__metadata__ for m in (a.metadata if isinstance(a, FieldInfo) else [a])
        ]
        return _ints(args[0], [*metadata, *extra], where)
    if origin in (Union, types.UnionType):
        return [i for a in args for i in _ints(a, metadata, where)]
    if tp is int:
        return [(where, metadata)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [
            i
            for name, f in tp.model_fields.items()
            for i in _ints(f.annotation, list(f.metadata), f"{where}.{name}")
        ]
    return [i for a in args for i in _ints(a, [], where)]


def test_every_integer_of_every_contract_is_bounded_within_64_bits() -> None:
    """The quick check leaves numbers to validation: an unbounded int would let
    an integer beyond 64 bits through, so every contract bounds each of its own."""
    found = [i for t, m in INBOUND_MODELS.items() for i in _ints(m, [], t)]
    assert any(where.endswith("data.duration_s") for where, _ in found)
    unbounded = [where for where, metadata in found if not int_is_bounded(metadata)]
    assert unbounded == []


def test_most_types_take_the_quick_check() -> None:
    open_types = {t for t, m in INBOUND_MODELS.items() if not is_closed(m)}
    # Free-form values (a card, a change's old and new) take the full check.
    assert open_types == {
        "customer.created",
        "customer.card_changed",
        "customer.merged",
        "order.changed",
        "task.edited",
    }


RECORDED_AT = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)

SEALED_CASES = [
    ("note.added", {"note_id": "n1", "text": "text"}),
    ("note.added", {"note_id": '"text":"x"', "text": '"text":"x"'}),
    ("note.added", {"note_id": "x", "text": "x"}),
    ("sms.sent", {"message_id": "m1", "to": "+49 1", "text": 'Zoë «x» \u2028 😀 \\ "'}),
    ("visit.recorded", {**_visit()["data"], "landing_page": "https://x/?a=1e-5&b=0.00001"}),
    ("visit.recorded", {**_visit()["data"], "utm": {"source": "s"}}),
    (
        "call.logged",
        {
            "call_id": "c",
            "direction": "inbound",
            "result": "answered",
            "duration_s": 1,
            "phone": "1",
            "recording_url": "https://r",
        },
    ),
    ("customer.created", {"card": {"name": "A", "n": 1e-05}}),
    ("customer.card_changed", {"changes": [{"field": "email", "old": None, "new": "a@b"}]}),
    *[("note.added", {"note_id": "n", "text": v}) for v in TRICKY_VALUES if isinstance(v, str)],
    *[("customer.created", {"card": {"v": v}}) for v in TRICKY_VALUES],
]


@pytest.mark.parametrize(("event_type", "data"), SEALED_CASES)
def test_sealing_spliced_writes_what_sealing_the_document_writes(
    event_type: str, data: dict[str, Any]
) -> None:
    raw = json.dumps(event(event_type, "c1", data, event_id=EID, source="a «b» 1e-05"))
    inbound = parse_inbound_json(raw)
    customer = Customer(id=customer_stream_id("c1"), customer_id="c1")
    recorded = customer.record(inbound, str(uuid.UUID(int=5)), RECORDED_AT)
    args = (event_type, "c1", recorded.event_id, KEYS)
    long_way = seal_envelope(stored_document(recorded), *args, random.Random(1).randbytes)  # type: ignore[arg-type]
    spliced = seal_spliced(stored_state(recorded), inbound.data, *args, random.Random(1).randbytes)  # type: ignore[arg-type]
    if event_type in ("note.added", "sms.sent", "call.logged") and '"' not in str(data):
        assert spliced is not None  # the plain cases do take the short way
    if spliced is not None:
        assert spliced == long_way
