"""Property: whatever a producer sends, `ledger append` either rejects it with one
line and stores nothing, or stores it and then every projection applies it, every
tab answers in JSON and human form, the relay's Kafka message fits the broker's
default limit, and `audit history` prints it. On both stores.

Events are built around hostile values: NUL and other control characters,
integers past 64 bits, non-finite numbers, times at the edges of years 1-9999,
deep and wide free-form values. The example count is kept small so the suite
stays fast; `bench/fuzz.py` runs the same property for longer."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_
from hypothesis import strategies as st

from cli.main import ledger
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.events.limits import MAX_STORED_BYTES
from ledger.printable import printable
from ledger.reading import head_position, read_rows
from projections.registry import PROJECTIONS
from projections.runner import Runner
from projections.schema import ensure_schema
from projections.tabs import TABS, TabRequest, read_tab
from projections.targets import Target
from relay import build_message
from tests.factories import append_raw, event

EXAMPLES = int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", "15"))
# The broker's default message.max.bytes.
KAFKA_MESSAGE_MAX_BYTES = 1_048_588

hostile_chars = st.characters(codec="utf-8") | st.sampled_from(
    ["\x00", "\x1b", "\r", "\n", "\u202e", "\x9b", "\u2028", "=", "-", "\\", '"']
)
text = st.text(hostile_chars, max_size=20)
numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2**63 - 1, -(2**63), 2**63, 1e308, 5e-324])
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12,
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from([datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)]),
).flatmap(lambda dt: offsets.map(lambda tz: dt.replace(tzinfo=tz).isoformat()))


ids = st.text(hostile_chars, min_size=1, max_size=20)
plain_ids = st.text("abcxyz-0123456789", min_size=1, max_size=12)
plain_times = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(datetime.isoformat)


def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    """Hostile one time in four, so most events get far enough to be stored."""
    return draw(hostile if draw(st.integers(0, 3)) == 0 else usual)


@st.composite
def hostile_events(draw: st.DrawFn, customer_id: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["card", "change", "note", "call", "task"]))
    data: dict[str, Any]
    if kind == "card":
        kind_type, data = "customer.created", {"card": draw(st.dictionaries(text, json_values))}
    elif kind == "change":
        change = {"field": draw(text), "old": draw(json_values), "new": draw(json_values)}
        kind_type, data = "customer.card_changed", {"changes": [change]}
    elif kind == "note":
        kind_type = "note.added"
        data = {"note_id": mostly(draw, plain_ids, ids), "text": draw(ids)}
    elif kind == "call":
        kind_type = "call.logged"
        data = {
            "call_id": mostly(draw, plain_ids, ids),
            "direction": "inbound",
            "result": "answered",
            "duration_s": mostly(draw, st.integers(0, 2**63 - 1), numbers),
            "phone": draw(st.none() | text),
        }
    else:
        kind_type = "task.created"
        data = {
            "task_id": mostly(draw, plain_ids, ids),
            "title": draw(ids),
            "due_at": draw(st.none() | times),
        }
    return event(
        kind_type,
        # A new customer for customer.created (the given one exists already).
        mostly(draw, st.just(customer_id + "-new" if kind == "card" else customer_id), text),
        data,
        occurred_at=mostly(draw, plain_times, times),
        actor={"kind": "user", "id": draw(ids), "name": draw(st.none() | text)},
        source=draw(st.none() | text),
    )


@pytest.fixture
def store(store_url: str) -> Iterator[tuple[str, LedgerApplication]]:
    app = LedgerApplication(parse_database_url(store_url))
    with Connection(app.url) as conn:
        ensure_schema(conn)
    yield store_url, app
    app.close()


def _check_stored(url: str, app: LedgerApplication, customer_id: str, head: int) -> None:
    cli = CliRunner()
    with Connection(app.url) as conn:
        runner = Runner(conn, [Target.live(p) for p in PROJECTIONS])
        runner.catch_up()
        assert runner.stopped == {}
        [row] = read_rows(conn, head - 1, 1)
        key, value, headers = build_message(row)
        size = len(key) + len(value) + sum(len(k) + len(v) for k, v in headers)
        assert len(row.state) <= MAX_STORED_BYTES and size < KAFKA_MESSAGE_MAX_BYTES
        for tab in TABS:
            answer = read_tab(conn, TabRequest(customer_id=customer_id, tab=tab))
            json.dumps(answer, allow_nan=False)
    for tab in TABS:
        shown = cli.invoke(ledger, ["--db", url, "tab", "--", customer_id, tab])
        assert shown.exit_code == 0, shown.output
        assert "\x1b" not in shown.stdout and "\r" not in shown.stdout
    for fmt in ("table", "csv", "json"):
        history = cli.invoke(
            ledger, ["--db", url, "audit", "history", "--customer", customer_id, "--format", fmt]
        )
        assert history.exit_code == 0, history.output
    assert str(row.position) in history.stdout  # the json history lists it


def _property(url: str, app: LedgerApplication, data: st.DataObject) -> None:
    customer_id = f"p-{uuid.uuid4().hex[:10]}"
    assert append_raw(app, json.dumps(event("customer.created", customer_id, {"card": {}}))).ok
    e = data.draw(hostile_events(customer_id))
    with Connection(app.url) as conn:
        before = head_position(conn)
    report = append_raw(app, json.dumps(e) + "\n")
    with Connection(app.url) as conn:
        after = head_position(conn)
    if report.rejected:
        [rejection] = report.rejected
        event_(f"rejected: {rejection.errors[0]}"[:80])
        line = printable(str(rejection))
        assert "\n" not in line and "\r" not in line and rejection.errors
        assert after == before
        return
    assert report.appended == 1 and after > before
    event_(f"stored: {e['type']}")
    stored_customer = e["customer_id"]
    _check_stored(url, app, stored_customer, after)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_accepted_events_can_be_carried_everywhere(
    store: tuple[str, LedgerApplication], data: st.DataObject
) -> None:
    _property(*store, data)
