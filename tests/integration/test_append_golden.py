"""The append path's output, pinned byte for byte on a fixed clock and fixed randomness.

A mixed input (duplicates of stored events and of earlier lines, contract and
rule rejections, claims, personal fields, an erasure) is appended on both
stores, in both modes, and every stored column, every `chain_hash` and every
rejection line must equal `tests/golden/append.json`, which the append path
wrote before it was made faster: a faster path must store the very same rows.

Regenerate (only when a change of stored bytes is intended) with
`LEDGER_WRITE_GOLDEN=1 .venv/bin/pytest tests/integration/test_append_golden.py`.
"""

from __future__ import annotations

import io
import json
import os
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.appending.appender import Appender
from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.audit.verify import verify_chain
from ledger.db import Connection
from ledger.entropy import Entropy
from ledger.input import read_items
from ledger.stores.layout import EVENT_COLUMNS, EVENTS_TABLE
from tests.factories import TRICKY_VALUES, event, ndjson

GOLDEN = Path(__file__).parent / "golden" / "append.json"
RECORDED_AT = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)
MARIA = {"kind": "user", "id": "u-1", "name": "Maria"}


def fixed_entropy(seed: int = 13) -> Entropy:
    rng = random.Random(seed)
    return Entropy(
        now=lambda: RECORDED_AT,
        new_event_id=lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        random_bytes=rng.randbytes,
    )


def _id(n: int) -> str:
    return str(uuid.UUID(int=n))


def _event(n: int | None, typ: str, cid: str, data: dict[str, Any]) -> dict[str, Any]:
    e = event(typ, cid, data, occurred_at="2026-10-01T10:00:00+02:00", actor=MARIA)
    if n is None:
        del e["event_id"]  # the ledger generates one
    else:
        e["event_id"] = _id(n)
    return e


SEED = [
    _event(1, "customer.created", "c-1", {"card": {"name": "Anna", "email": "a@x.test"}}),
    _event(2, "customer.created", "c-2", {"card": {"name": "Bob"}}),
    _event(3, "order.created", "c-1", {"order_id": "o-1", "status": "new", "total": "10.00"}),
    _event(4, "sms.sent", "c-1", {"message_id": "s-1", "to": "+100", "text": "Hi"}),
]

ORDER_CHANGED = _event(
    12,
    "order.changed",
    "c-1",
    {
        "order_id": "o-1",
        "changes": [
            {"field": "address", "old": None, "new": "Main St 1"},
            {"field": "status", "old": "new", "new": "paid"},
        ],
    },
)
ORDER_CHANGED_OTHER = {**ORDER_CHANGED, "source": "elsewhere"}

# (line text, whether it is rejected): lines stored or counted as duplicates are False.
MIXED: list[tuple[str, bool]] = [
    (json.dumps(_event(None, "note.added", "c-1", {"note_id": "n-1", "text": "Called"})), False),
    (json.dumps(SEED[2]), False),  # a duplicate of a stored event
    (json.dumps(_event(11, "order.created", "c-2", {"order_id": "o-1", "status": "new"})), True),
    ('{"event_id": "broken', True),  # malformed JSON
    (json.dumps(ORDER_CHANGED), False),
    (json.dumps(ORDER_CHANGED_OTHER), True),  # another event under an id used above
    (json.dumps(ORDER_CHANGED), False),  # a duplicate of an earlier line
    (json.dumps(_event(13, "sms.delivered", "c-2", {"message_id": "s-9"})), True),
    (json.dumps(_event(14, "parcel.lost", "c-2", {})), True),  # unknown type
    (
        json.dumps(_event(15, "customer.created", "c-3", {"card": {"name": "Cleo", "vip": True}})),
        False,
    ),
    (
        json.dumps(
            _event(16, "task.created", "c-3", {"task_id": "t-1", "title": "Call", "text": "x"})
        ),
        False,
    ),
    (json.dumps(_event(17, "call.logged", "c-3", {"call_id": "k-1", "result": "busy"})), True),
    (
        json.dumps(_event(18, "chat.started", "c-3", {"dialog_id": "d-1", "channel": "telegram"})),
        False,
    ),
    (
        json.dumps(
            _event(
                19,
                "chat.message",
                "c-3",
                {"dialog_id": "d-1", "message_id": "m-1", "direction": "inbound", "text": "Yo"},
            )
        ),
        False,
    ),
    (
        json.dumps(
            _event(20, "customer.erased", "c-2", {"reason": "asked", "requested_by": "u-1"})
        ),
        False,
    ),
    (json.dumps(_event(21, "note.added", "c-2", {"note_id": "n-2", "text": "Late"})), True),
    (json.dumps(_event(22, "order.created", "c-3", {"order_id": "o-3", "status": "new"})), False),
    (
        '{"event_id": "' + _id(23) + '", "type": "call.logged", "customer_id": "c-1", '
        '"occurred_at": "2026-10-01T10:00:00Z", "actor": {"kind": "api", "id": "a"}, '
        '"data": {"call_id": "k-2", "direction": "inbound", "result": "missed", '
        '"duration_s": 1e999}}',
        True,
    ),
    (
        json.dumps(
            _event(
                24,
                "visit.recorded",
                "c-1",
                {
                    "visit_id": "v-1",
                    "source": "google",
                    "channel": "search",
                    "duration_s": 5,
                    "landing_page": "https://shop.test/?u=anna",
                },
            )
        ),
        False,
    ),
    (json.dumps(_event(None, "order.created", "c-3", {"order_id": "o-3", "status": "x"})), True),
]


def _append(
    app: LedgerApplication, text: str, entropy: Entropy, *, skip_invalid: bool
) -> AppendReport:
    with Appender(app, batch_size=4, entropy=entropy) as appender:
        return appender.append(read_items(io.StringIO(text)), skip_invalid=skip_invalid)


def _report(report: AppendReport) -> dict[str, Any]:
    return {
        "appended": report.appended,
        "duplicates": report.duplicates,
        "stored": report.stored,
        "first_position": report.first_position,
        "last_position": report.last_position,
        "rejected": [f"{r.reason_class}: {r}" for r in report.rejected],
    }


def _rows(app: LedgerApplication) -> list[dict[str, Any]]:
    with Connection(app.url) as conn:
        rows = conn.fetchall(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM {EVENTS_TABLE} ORDER BY notification_id"
        )
        verified = verify_chain(conn)
    assert verified.broken is None
    assert verified.last_position == (rows[-1][0] if rows else 0)
    out = []
    for row in rows:
        values = dict(zip(EVENT_COLUMNS, row, strict=True))
        oid = values["originator_id"]
        values["originator_id"] = oid.hex if isinstance(oid, uuid.UUID) else oid
        values["state"] = bytes(values["state"]).decode()
        values["creates_subject"] = bool(values["creates_subject"])
        out.append(values)
    return out


def _run(app: LedgerApplication, case: str) -> dict[str, Any]:
    entropy = fixed_entropy()
    seeded = _append(app, ndjson(SEED), entropy, skip_invalid=False)
    assert seeded.ok and seeded.appended == len(SEED)
    if case == "all_or_nothing_valid":
        text = "\n".join(line for line, rejected in MIXED if not rejected) + "\n"
    else:
        text = "\n".join(line for line, _ in MIXED) + "\n"
    report = _append(app, text, entropy, skip_invalid=case == "skip_invalid")
    return {"report": _report(report), "rows": _rows(app)}


CASES = ["skip_invalid", "all_or_nothing", "all_or_nothing_valid"]


@pytest.mark.parametrize("case", CASES)
def test_append_stores_exactly_the_pinned_rows_and_reports(
    app: LedgerApplication, case: str
) -> None:
    got = _run(app, case)
    if os.environ.get("LEDGER_WRITE_GOLDEN"):
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        golden[case] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())[case]
    assert got["report"] == expected["report"]
    assert got["rows"] == expected["rows"]


def test_the_pinned_input_covers_what_the_append_path_decides() -> None:
    """The golden cases are only as good as their input: every kind of outcome is in it."""
    golden = json.loads(GOLDEN.read_text())
    skipped = golden["skip_invalid"]
    reasons = "\n".join(skipped["report"]["rejected"])
    for expected in (
        "contract: ",
        "rule: ",
        "malformed JSON",
        "already exists for another customer",
        "a different event with this event_id is already earlier in this input",
        "customer is erased",
        "unknown event type",
        "numbers must be finite",
    ):
        assert expected in reasons
    assert skipped["report"]["duplicates"] == 2
    assert golden["all_or_nothing"]["report"]["stored"] is False
    assert len(golden["all_or_nothing"]["rows"]) == len(SEED)
    states = [r["state"] for r in skipped["rows"]]
    assert all('"enc":"v1"' in s for s in states if '"customer.created"' in s)
    assert golden["all_or_nothing_valid"]["rows"][len(SEED) :] != []


@pytest.mark.parametrize("value", TRICKY_VALUES, ids=repr)
def test_sealing_the_validated_dict_stores_the_bytes_sealing_the_json_did(
    app: LedgerApplication, value: Any
) -> None:
    """The append path seals the event's dict before its one serialisation; the
    bytes equal those of serialising, decoding, sealing and serialising again."""
    from ledger.domain import Customer, customer_stream_id
    from ledger.events import parse_inbound_json
    from ledger.mapper import stored_state
    from ledger.personal import seal

    raw = json.dumps(_event(1, "customer.created", "c-9", {"card": {"v": value, "n": "A"}}))
    inbound = parse_inbound_json(raw)
    ring = app.ledger_mapper.keyring
    assert ring is not None
    with app.ledger_recorder.write_session() as session:
        ring.prepare(session, ["c-9"])
        customer = Customer(id=customer_stream_id("c-9"), customer_id="c-9")
        recorded = customer.record(inbound, _id(1), RECORDED_AT)
        row = app.ledger_mapper.event_row(recorded, random.Random(1).randbytes)
        before = seal(
            stored_state(recorded), inbound.type, "c-9", _id(1), ring, random.Random(1).randbytes
        )
        ring.release()
    assert row[3] == before
    # The stored format of sealed envelopes is json.dumps's, whatever writes it.
    assert (
        row[3] == json.dumps(json.loads(row[3]), ensure_ascii=False, separators=(",", ":")).encode()
    )


def test_sealed_json_is_written_as_json_dumps_writes_it() -> None:
    """The faster serializer's output is only kept where it equals json.dumps's:
    every string, and floats of every magnitude (small ones differ)."""
    from ledger.personal import _json

    rng = random.Random(5)
    floats = [rng.uniform(-10, 10) * 10.0 ** rng.randint(-30, 30) for _ in range(20_000)]
    floats += [float(rng.randint(1, 999)) * 10.0 ** rng.randint(-9, 20) for _ in range(20_000)]
    strings = ["".join(chr(rng.randint(0, 0x2FFF)) for _ in range(20)) for _ in range(2_000)]
    for value in [*floats, *strings, {"k": floats[:50], "s": strings[:50]}]:
        assert _json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
