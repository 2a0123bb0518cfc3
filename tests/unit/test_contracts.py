"""Event contracts: strictness, error messages, and the committed JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.catalogue_doc import render_catalogue
from ledger.events import EVENT_TYPES, ContractError, parse_inbound
from ledger.schemas import render_schemas
from tests.factories import event

ROOT = Path(__file__).resolve().parents[2]


def errors_of(e: dict[str, Any]) -> list[str]:
    with pytest.raises(ContractError) as info:
        parse_inbound(e)
    return [str(err) for err in info.value.errors]


def test_catalogue_has_every_spec_type() -> None:
    spec = (ROOT / "docs" / "events.md").read_text()
    in_spec = {
        t
        for line in spec.splitlines()
        if line.startswith("| `")
        for t in line.split("|")[1].replace("`", "").replace(" ", "").split("/")
        if "." in t
    }
    # the spec's 26, customer.erased (docs/privacy.md), customer.not_duplicate and the
    # merge's four: customer.merged, .absorbed, .unmerged, .released (docs/merging.md)
    assert len(EVENT_TYPES) == 32
    assert in_spec == set(EVENT_TYPES)


def test_committed_catalogue_matches_the_contracts() -> None:
    assert (ROOT / "docs" / "events.md").read_text() == render_catalogue(), (
        "docs/events.md is out of date: run `ledger schemas catalogue > docs/events.md`"
    )


def test_valid_event_parses_with_typed_payload() -> None:
    e = parse_inbound(
        event("order.created", "c1", {"order_id": "o1", "status": "new", "total": "12.50"})
    )
    assert e.type == "order.created"
    assert e.data.order_id == "o1"  # type: ignore[attr-defined]
    assert e.data.total == "12.50"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e["data"].update(extra=1), "data.extra: unknown field"),
        (lambda e: e.update(colour="red"), "colour: unknown field"),
        (lambda e: e["data"].pop("task_id"), "data.task_id: Field required"),
        (
            lambda e: e.update(occurred_at="2026-10-01T10:00:00"),
            "occurred_at: Input should have timezone info",
        ),
        (
            lambda e: e.update(occurred_at=1700000000),
            "occurred_at: Input should be a valid datetime",
        ),
        (
            lambda e: e["actor"].update(kind="robot"),
            "actor.kind: Input should be 'user', 'system', 'api' or 'integration'",
        ),
        (
            lambda e: e.update(customer_id=""),
            "customer_id: String should have at least 1 character",
        ),
        (lambda e: e["data"].update(task_id=5), "data.task_id: Input should be a valid string"),
        (lambda e: e.update(event_id="nope"), "event_id: Input should be a valid UUID"),
        (lambda e: e.update(type="task.finished"), "type: unknown event type 'task.finished'"),
        (lambda e: e.pop("type"), "type: field required"),
    ],
)
def test_bad_events_name_field_and_reason(mutate: Any, expected: str) -> None:
    e = event("task.completed", "c1", {"task_id": "t1"})
    mutate(e)
    assert any(msg.startswith(expected) for msg in errors_of(e)), errors_of(e)


def test_enums_and_bounds_are_enforced() -> None:
    e = event(
        "call.logged",
        "c1",
        {"call_id": "k", "direction": "sideways", "result": "answered", "duration_s": -1},
    )
    msgs = errors_of(e)
    assert "data.direction: Input should be 'inbound' or 'outbound'" in msgs
    assert "data.duration_s: Input should be greater than or equal to 0" in msgs
    e = event("chat.started", "c1", {"dialog_id": "d", "channel": "pigeon"})
    assert errors_of(e)[0].startswith("data.channel: Input should be")


def test_decimals_are_strings_and_changes_non_empty() -> None:
    msgs = errors_of(
        event("order.created", "c1", {"order_id": "o", "status": "new", "total": 9.99})
    )
    assert msgs == ["data.total: Input should be a valid string"]
    msgs = errors_of(
        event("order.created", "c1", {"order_id": "o", "status": "new", "total": "9,99"})
    )
    assert msgs[0].startswith("data.total: String should match pattern")
    msgs = errors_of(event("order.changed", "c1", {"order_id": "o", "changes": []}))
    assert msgs[0].startswith("data.changes: List should have at least 1 item")
    msgs = errors_of(event("order.changed", "c1", {"order_id": "o", "changes": [{"field": "x"}]}))
    assert "data.changes[0].old: Field required" in msgs


def test_change_values_may_be_null() -> None:
    e = parse_inbound(
        event(
            "customer.card_changed",
            "c1",
            {"changes": [{"field": "phone", "old": None, "new": "+49"}]},
        )
    )
    assert e.data.changes[0].old is None  # type: ignore[attr-defined]


def test_committed_schemas_match_the_models() -> None:
    rendered = render_schemas()
    on_disk = {
        str(p.relative_to(ROOT / "schemas")): p.read_text()
        for p in (ROOT / "schemas").rglob("*.json")
    }
    stale = sorted(k for k in rendered if on_disk.get(k) != rendered[k])
    # openapi.json is the HTTP API's, checked against the served document in test_http_api.
    # versions/ holds every published version, checked by test_compatibility.
    extra = sorted(
        k for k in set(on_disk) - set(rendered) - {"openapi.json"} if not k.startswith("versions/")
    )
    assert not stale and not extra, (
        f"schemas/ is out of date (run `ledger schemas export`): changed {stale}, extra {extra}"
    )


def test_each_schema_carries_its_version_and_rejects_unknown_keys() -> None:
    schema = json.loads((ROOT / "schemas" / "events" / "task.completed.json").read_text())
    assert schema["x-schema-version"] == 1
    assert schema["additionalProperties"] is False
    assert schema["properties"]["type"]["const"] == "task.completed"


def test_integers_written_with_a_zero_fraction_are_integers() -> None:
    # The published schemas say "integer", which JSON Schema also calls 2.0 and
    # 2e0; a producer whose validator passes them must not be refused.
    data = {"file_id": "f", "name": "a.pdf", "size_bytes": 2.0}
    parsed = parse_inbound(event("file.attached", "c1", data))
    assert parsed.data.size_bytes == 2  # type: ignore[attr-defined]
    assert isinstance(parsed.data.size_bytes, int)  # type: ignore[attr-defined]
    raw = json.dumps(event("file.attached", "c1", data)).replace("2.0", "2e0")
    from ledger.events.catalogue import parse_inbound_json

    assert parse_inbound_json(raw).data.size_bytes == 2  # type: ignore[attr-defined]
    msgs = errors_of(event("file.attached", "c1", {**data, "size_bytes": 2.5}))
    assert msgs == ["data.size_bytes: Input should be a valid integer"]
    assert errors_of(event("file.attached", "c1", {**data, "size_bytes": "2"}))
