"""The lean path of one-event appends (`api.lane`): it takes exactly the requests
FastAPI would route to `POST /v1/events` with nothing more to do, answers them
as the route does, and leaves every other request to FastAPI. And /healthz
answers while appends wait for the store."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Receive, Scope, Send

from api.lane import EventsLane
from ledger.config import parse_database_url
from ledger.stores.layout import EVENTS_TABLE
from tests.conftest import PG_URL
from tests.factories import event
from tests.http_support import make_keys, serve_in_thread


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests the lane answered."""
    calls: list[str] = []
    answer = EventsLane.__call__

    async def counted(self: EventsLane, scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await answer(self, scope, receive, send)

    monkeypatch.setattr(EventsLane, "__call__", counted)
    return calls


def _requests(text: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ledger_http_requests_total" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return float(sample.value)
    return 0.0


def _note(i: int, **extra: Any) -> dict[str, Any]:
    return event("note.added", "c1", {"note_id": f"n{i}", "text": "t"}, **extra)


def test_one_event_appends_take_the_lane_and_answer_as_the_route(
    sqlite_url: str, lane_calls: list[str]
) -> None:
    with serve_in_thread(sqlite_url) as client:
        created = event("customer.created", "c1", {"card": {"name": "Ann"}})
        assert client.post("/v1/events", json=created).status_code == 200
        before = client.get("/metrics").text
        lane_calls.clear()

        note = _note(1)
        one = client.post("/v1/events", json=note, headers={"X-Request-Id": "lane-1"})
        assert one.status_code == 200
        assert one.headers["x-request-id"] == "lane-1"
        assert one.headers["content-type"] == "application/json"
        assert one.json() == {
            "appended": 1,
            "duplicates": 0,
            "rejected": [],
            "rejected_omitted": 0,
            "first_position": 2,
            "last_position": 2,
        }
        again = client.post("/v1/events", json=note).json()
        assert (again["appended"], again["duplicates"], again["first_position"]) == (0, 1, None)
        bad = client.post("/v1/events", json=_note(2, occurred_at="not a time"))
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        problem = bad.json()
        assert problem["request_id"] == bad.headers["x-request-id"]
        (reason,) = problem["errors"]
        assert (reason["index"], reason["field"]) == (0, "occurred_at")
        array = client.post("/v1/events", json=[_note(3), _note(4)])
        assert array.json()["appended"] == 2
        assert client.post("/v1/events", content=b"\xff", headers=_json()).status_code == 422
        lines = client.post(
            "/v1/events",
            content=b'{"type": "x"}\n',
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert lines.status_code == 422 and lines.json()["errors"][0]["index"] == 0
        text = client.post("/v1/events", content=b"{}", headers={"Content-Type": "text/plain"})
        assert text.status_code == 415
        assert lane_calls == ["/v1/events"] * 7

        # Not the lane's: FastAPI routes them, as before.
        skip = client.post("/v1/events", params={"skip_invalid": "true"}, json=_note(5))
        assert skip.json()["appended"] == 1
        wrong = client.post("/v1/events", params={"skip_invalid": "maybe"}, json=_note(6))
        assert wrong.status_code == 422 and "skip_invalid" in wrong.json()["detail"]
        assert client.get("/v1/events").status_code == 405
        assert lane_calls == ["/v1/events"] * 7

        after = client.get("/metrics").text
        counted = {
            status: _requests(after, method="POST", route="/v1/events", status=status)
            - _requests(before, method="POST", route="/v1/events", status=status)
            for status in ("200", "422", "415")
        }
        assert counted == {"200": 4, "422": 4, "415": 1}


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def test_the_lane_authenticates_as_the_route(
    tmp_path: Path, sqlite_url: str, lane_calls: list[str]
) -> None:
    keys = make_keys(tmp_path)
    with serve_in_thread(sqlite_url, access=keys.access()) as client:
        none = client.post("/v1/events", json=_note(1))
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
        reader = client.post("/v1/events", json=_note(1), headers=keys.auth("reader"))
        assert reader.status_code == 403 and "'ingest'" in reader.json()["detail"]
        created = event("customer.created", "c1", {"card": {"name": "Ann"}})
        ingest = client.post("/v1/events", json=created, headers=keys.auth("ingest"))
        assert ingest.status_code == 200, ingest.text
    assert len(lane_calls) == 3


def test_cors_requests_keep_their_headers(sqlite_url: str, lane_calls: list[str]) -> None:
    origin = "https://crm.example"
    with serve_in_thread(sqlite_url, cors_origins=[origin]) as client:
        created = event("customer.created", "c1", {"card": {"name": "Ann"}})
        answer = client.post("/v1/events", json=created, headers={"Origin": origin})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        assert client.post("/v1/events", json=_note(1)).status_code == 200
    assert len(lane_calls) == 1  # only the one without an Origin


def test_healthz_answers_while_appends_wait_for_the_store(pg_url: str) -> None:
    schema = parse_database_url(pg_url).schema
    with serve_in_thread(pg_url) as client:
        created = event("customer.created", "c1", {"card": {"name": "Ann"}})
        assert client.post("/v1/events", json=created).status_code == 200
        admin = psycopg.connect(parse_database_url(PG_URL).conninfo())
        try:
            # Another writer holds the write lock: the group writer's next group waits.
            admin.execute(f'LOCK TABLE "{schema}"."{EVENTS_TABLE}" IN EXCLUSIVE MODE')
            waiting: list[httpx.Response] = []
            appends = [
                threading.Thread(target=lambda i=i: waiting.append(_post(client, _note(i))))
                for i in range(4)
            ]
            for t in appends:
                t.start()
            time.sleep(0.5)
            assert not waiting  # stuck behind the lock
            started = time.monotonic()
            for _ in range(5):
                assert client.get("/healthz").json() == {"status": "ok"}
            assert time.monotonic() - started < 2
            assert not waiting
        finally:
            admin.rollback()
            admin.close()
        for t in appends:
            t.join(30)
    assert [a.status_code for a in waiting] == [200] * 4


def _post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/events", json=body)
