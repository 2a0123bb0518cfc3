"""Contracts that evolve (docs/events.md, "Versions"), on both stores: an event
stored under version 1 of `visit.recorded` (before its campaign became `utm`)
and one a producer still sends in version 1 read in the current shape on every
path (tabs, timeline, audit history, a rebuild, the relay's messages), while
the stored bytes and the hash chain stay as they were."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.events import parse_recorded_json
from ledger.reading import read_rows
from ledger.stores.rows import LedgerStoredEvent
from projections import registry
from projections.rebuild import rebuild
from relay.messages import build_message
from services.bootstrap import prepare_store
from services.tabs import tab_request, tab_rows
from tests.cli_runner import ledger_cli
from tests.factories import append_events, append_ok, event
from tests.integration.test_subscriber import relay_all
from tests.relay_support import topic_reader

if TYPE_CHECKING:
    from tests.kafka_broker import TansuBroker

STORED_V1 = "00000000-0000-4000-8000-0000000000a1"


def store_v1_visit(app: LedgerApplication, customer_id: str, visit_id: str) -> None:
    """A visit stored by a ledger of version 1 of the contract (through the
    recorder: the hash chain is the real one)."""
    state = {
        "event_id": STORED_V1,
        "recorded_at": "2026-10-02T10:00:00Z",
        "schema_version": 1,
        "type": "visit.recorded",
        "customer_id": customer_id,
        "occurred_at": "2026-10-02T09:00:00Z",
        "actor": {"kind": "integration", "id": "analytics"},
        "source": "analytics",
        "data": {
            "visit_id": visit_id,
            "source": "google",
            "channel": "ppc",
            "duration_s": 60,
            "campaign": "spring-sale",
        },
    }
    version = app.customer(customer_id).version + 1
    with app.ledger_recorder.write_session() as session:
        session.insert(
            [
                LedgerStoredEvent(
                    originator_id=customer_stream_id(customer_id),
                    originator_version=version,
                    topic="visit.recorded",
                    state=json.dumps(state).encode(),
                    event_id=STORED_V1,
                    customer_id=customer_id,
                    subject=f"visit:{visit_id}",
                    creates_subject=True,
                )
            ]
        )


def visit(visit_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "visit_id": visit_id,
        "source": "newsletter",
        "channel": "email",
        "duration_s": 30,
        **extra,
    }


@pytest.fixture
def stored(app: LedgerApplication) -> LedgerApplication:
    append_ok(app, [event("customer.created", "c-1", {"card": {"name": "Anna"}})])
    store_v1_visit(app, "c-1", "v-old")
    append_ok(
        app,
        [
            # A producer still on version 1.
            {
                **event(
                    "visit.recorded",
                    "c-1",
                    visit("v-sent", campaign="winter"),
                    occurred_at="2026-10-03T09:00:00Z",
                ),
                "schema_version": 1,
            },
            event(
                "visit.recorded",
                "c-1",
                visit("v-new", utm={"source": "newsletter", "medium": "email", "campaign": "x"}),
                occurred_at="2026-10-04T09:00:00Z",
            ),
        ],
    )
    return app


def visits(app: LedgerApplication) -> dict[str, Any]:
    with Connection(app.url) as conn:
        prepare_store(conn)
        rows = tab_rows(conn, tab_request("c-1", "visits"))
    return {v["visit_id"]: v["utm"] for v in rows["items"]}


EXPECTED = {
    "v-old": {"campaign": "spring-sale"},
    "v-sent": {"campaign": "winter"},
    "v-new": {"source": "newsletter", "medium": "email", "campaign": "x"},
}


def test_every_version_reads_in_the_current_shape(stored: LedgerApplication) -> None:
    assert visits(stored) == EXPECTED
    with Connection(stored.url) as conn:
        prepare_store(conn)
        timeline = tab_rows(conn, tab_request("c-1", "timeline", kinds=["visits"]))
        report = rebuild(conn, [registry.get("visits"), registry.get("timeline")])
    assert report.events > 0
    data = {i["data"]["visit_id"]: i["data"] for i in timeline["items"]}
    assert data["v-old"]["utm"] == {"campaign": "spring-sale"} and "campaign" not in data["v-old"]
    assert visits(stored) == EXPECTED  # the same after a rebuild


def test_stored_bytes_keep_their_version_and_the_chain_verifies(
    stored: LedgerApplication, store_url: str
) -> None:
    with Connection(stored.url) as conn:
        states = {
            json.loads(bytes(r[1]))["data"]["visit_id"]: json.loads(bytes(r[1]))
            for r in conn.fetchall(
                "SELECT notification_id, state FROM ledger_events WHERE topic = 'visit.recorded'"
            )
        }
    assert states["v-old"]["schema_version"] == 1 and states["v-old"]["data"]["campaign"]
    # Sent in version 1: stored upcast, the version it came in named.
    assert states["v-sent"]["schema_version"] == 2
    assert states["v-sent"]["sent_schema_version"] == 1
    assert states["v-sent"]["data"]["utm"]["campaign"] == "winter"
    assert "sent_schema_version" not in states["v-new"]
    verify = ledger_cli("audit", "verify", db=store_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    history = ledger_cli("audit", "history", "--customer", "c-1", "--format", "json", db=store_url)
    shown = json.loads(history.stdout)["events"]
    old = next(e for e in shown if e["event_id"] == STORED_V1)
    assert old["schema_version"] == 1  # as stored
    assert old["data"]["utm"] == {"campaign": "spring-sale"}  # in the current shape


def test_the_relay_publishes_the_current_version_and_names_the_stored_one(
    stored: LedgerApplication,
) -> None:
    with Connection(stored.url) as conn:
        rows = [r for r in read_rows(conn, 0, 100) if r.type == "visit.recorded"]
    messages = {json.loads(build_message(r)[1])["data"]["visit_id"]: build_message(r) for r in rows}
    key, value, headers = messages["v-old"]
    body = json.loads(value)
    assert key == b"c-1"
    assert body["schema_version"] == 2 and body["stored_schema_version"] == 1
    assert body["data"]["utm"] == {"campaign": "spring-sale"}
    assert dict(headers)["schema_version"] == b"2"
    assert dict(headers)["stored_schema_version"] == b"1"
    _, _, current = messages["v-new"]
    assert "stored_schema_version" not in dict(current)


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (3, "unknown version 3 of visit.recorded (known: 1, 2)"),
        (0, "unknown version 0 of visit.recorded (known: 1, 2)"),
    ],
)
def test_an_unknown_version_is_one_rejection_naming_the_field(
    stored: LedgerApplication, version: int, reason: str
) -> None:
    report = append_events(
        stored, [{**event("visit.recorded", "c-1", visit("v-x")), "schema_version": version}]
    )
    assert report.appended == 0
    [rejection] = report.rejected
    assert [(e.field, e.reason) for e in rejection.errors] == [("schema_version", reason)]


def test_version_1_fields_are_refused_in_version_2(stored: LedgerApplication) -> None:
    report = append_events(stored, [event("visit.recorded", "c-1", visit("v-y", campaign="z"))])
    assert report.appended == 0
    assert [e.field for e in report.rejected[0].errors] == ["data.campaign"]


def test_a_subscriber_gets_an_old_event_in_the_current_version(
    pg_url: str, kafka_broker: TansuBroker
) -> None:
    """Through the real relay and test broker, as the subscriber kit reads it."""
    app = LedgerApplication(parse_database_url(pg_url))
    try:
        append_ok(app, [event("customer.created", "c-1", {"card": {"name": "Anna"}})])
        store_v1_visit(app, "c-1", "v-old")
        published = relay_all(pg_url, kafka_broker.bootstrap)
    finally:
        app.close()
    assert published == 2
    with topic_reader(kafka_broker.bootstrap) as reader:
        reader.read_until(lambda records: len(records) >= 2)
        [record] = [r for r in reader.records if dict(r.headers)["type"] == b"visit.recorded"]
    headers = dict(record.headers)
    assert (headers["schema_version"], headers["stored_schema_version"]) == (b"2", b"1")
    received = parse_recorded_json(record.value)  # what the subscriber kit decodes
    assert received.schema_version == 2 and received.stored_schema_version == 1
    assert received.data.utm is not None  # type: ignore[attr-defined]
    assert received.data.utm.campaign == "spring-sale"  # type: ignore[attr-defined]
