"""Upcasting (ledger.upcasting): the chain from any known version to the current
one, the table every reader consults, and what an unknown version gets."""

from __future__ import annotations

import json

import pytest

from ledger.events import PAYLOADS, parse_recorded_json
from ledger.upcasting import (
    CURRENT_VERSIONS,
    VersionError,
    current_json,
    is_current,
    upcast_data,
    upcast_document,
)


def test_the_readers_table_is_the_contracts_versions() -> None:
    assert CURRENT_VERSIONS == {
        t: p.schema_version for t, p in PAYLOADS.items() if p.schema_version != 1
    }


def test_every_older_version_has_an_upcaster_to_the_next() -> None:
    for event_type, payload in PAYLOADS.items():
        assert sorted(payload.upcasters) == list(range(1, payload.schema_version)), event_type


@pytest.mark.parametrize(
    ("v1", "v2"),
    [
        ({"visit_id": "v", "campaign": "spring"}, {"visit_id": "v", "utm": {"campaign": "spring"}}),
        ({"visit_id": "v", "campaign": None}, {"visit_id": "v"}),
        ({"visit_id": "v"}, {"visit_id": "v"}),
    ],
)
def test_visit_v1_campaign_becomes_utm_campaign(
    v1: dict[str, object], v2: dict[str, object]
) -> None:
    before = json.dumps(v1)
    assert upcast_data("visit.recorded", 1, v1) == v2
    assert json.dumps(v1) == before  # pure: the input is not changed


def test_the_current_version_passes_unchanged() -> None:
    data = {"visit_id": "v", "utm": {"medium": "email"}}
    assert upcast_data("visit.recorded", 2, data) is data
    assert upcast_data("note.added", 1, data) is data


@pytest.mark.parametrize("version", [0, 3, -1])
def test_an_unknown_version_is_refused(version: int) -> None:
    with pytest.raises(VersionError, match=r"unknown version .* of visit.recorded \(known: 1, 2\)"):
        upcast_data("visit.recorded", version, {})


def _stored(version: int, data: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "event_id": "00000000-0000-4000-8000-000000000001",
            "recorded_at": "2026-10-01T10:00:00Z",
            "schema_version": version,
            "type": "visit.recorded",
            "customer_id": "c-1",
            "occurred_at": "2026-10-01T10:00:00Z",
            "actor": {"kind": "system", "id": "s"},
            "source": None,
            "data": data,
        },
        separators=(",", ":"),
    ).encode()


def test_a_stored_old_version_reads_as_the_current_one() -> None:
    v1 = _stored(
        1, {"visit_id": "v", "source": "g", "channel": "ppc", "duration_s": 1, "campaign": "c"}
    )
    assert not is_current(v1)
    event = parse_recorded_json(v1)
    assert event.schema_version == 2 and event.stored_schema_version == 1
    assert event.data.utm is not None and event.data.utm.campaign == "c"  # type: ignore[attr-defined]
    document = upcast_document(json.loads(v1))
    assert document["stored_schema_version"] == 1 and "campaign" not in document["data"]


def test_a_current_one_is_read_as_stored() -> None:
    v2 = _stored(2, {"visit_id": "v", "source": "g", "channel": "ppc", "duration_s": 1})
    assert is_current(v2)
    assert current_json(v2) is v2
