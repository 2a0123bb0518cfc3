"""Decoding stored events' data without validation (`recorded_data_unchecked`,
what loading customers' states does thousands of times): the same payload as
pydantic's `model_construct` of the whole envelope, whatever the layout."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger.events import PAYLOADS
from ledger.events.catalogue import _constructed, _trailing_data, recorded_data_unchecked
from ledger.events.common import Payload


def _state(data: dict[str, Any], *, event_type: str = "task.created", after: str = "") -> bytes:
    """A stored envelope as `ledger.mapper.stored_state` writes it (data last),
    or with `after` (keys after the data)."""
    version = PAYLOADS[event_type].schema_version
    head = (
        f'{{"event_id":"0b7c1d5e-8f7a-4c43-9c58-4b51d6f0b0a1",'
        f'"recorded_at":"2026-12-07T08:00:00Z","schema_version":{version},'
        f'"type":"{event_type}","customer_id":"c1","occurred_at":"2026-12-07T07:00:00Z",'
        f'"actor":{{"kind":"user","id":"u-1"}},"source":"crm"'
    )
    return f'{head},"data":{json.dumps(data, separators=(",", ":"))}{after}}}'.encode()


def _same(built: Payload, expected: Payload) -> None:
    assert type(built) is type(expected)
    assert vars(built) == vars(expected)
    assert built.model_fields_set == expected.model_fields_set
    assert built.model_dump(warnings=False) == expected.model_dump(warnings=False)


TASK = {"task_id": "t-1", "title": "Call back"}


def test_the_trailing_data_is_decoded_alone() -> None:
    assert _trailing_data(_state(TASK)) == TASK
    built = recorded_data_unchecked("task.created", _state(TASK))
    _same(built, PAYLOADS["task.created"].model_construct(**TASK))
    assert built.task_id == "t-1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (_state(TASK, after=',"sent_schema_version":1'), "a key after the data"),
        (_state({**TASK, "meta": {"x": 1, "data": {"y": 2}}}), "a nested data key, last"),
        (_state({**TASK, "meta": [{"a": 1, "data": 2}]}), "a nested data key in a list"),
        (_state({**TASK, "title": ',"data":{}}'}), "the key's text inside a string"),
        (_state(TASK) + b" ", "text after the envelope"),
    ],
)
def test_anything_else_is_told_apart_and_decoded_whole(state: bytes, why: str) -> None:
    whole = json.loads(state)["data"]
    assert _trailing_data(state) in (None, whole), why
    built = recorded_data_unchecked("task.created", state)
    _same(built, PAYLOADS["task.created"].model_construct(**whole))


def test_a_state_in_another_key_order_is_decoded_whole() -> None:
    # As a stored envelope read back and stored again is written: data not last.
    state = json.dumps(
        {"event_id": "e", "type": "visit.recorded", "data": {"visit_id": "v-1"}, "x": 1}
    ).encode()
    assert _trailing_data(state) is None
    assert recorded_data_unchecked("visit.recorded", state).visit_id == "v-1"  # type: ignore[attr-defined]


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_construction_equals_model_construct_for_every_type(event_type: str) -> None:
    model = PAYLOADS[event_type]
    required = {
        name: _sample(info.annotation)
        for name, info in model.model_fields.items()
        if info.is_required()
    }
    for data in (required, {**required, **_optional_samples(model)}):
        _same(_constructed(model, dict(data)), model.model_construct(**data))
    # A key the model lacks, or a required one missing: model_construct decides.
    _same(_constructed(model, {**required, "zz": 1}), model.model_construct(**required, zz=1))
    if required:
        name = next(iter(required))
        rest = {k: v for k, v in required.items() if k != name}
        _same(_constructed(model, dict(rest)), model.model_construct(**rest))


def _optional_samples(model: type[Payload]) -> dict[str, Any]:
    return {
        name: _sample(info.annotation)
        for name, info in model.model_fields.items()
        if not info.is_required()
    }


def _sample(annotation: Any) -> Any:
    # Unchecked construction keeps whatever it is given: any value will do.
    return f"sample-{annotation!r}"[:40]
