"""Defects the API fuzz run found, each pinned on both stores."""

from __future__ import annotations

from tests.http_support import serve_in_thread


def test_a_repeated_erasure_event_alone_is_a_duplicate_not_a_hang(store_url: str) -> None:
    # One event without an event_id, erasing a customer already erased: the
    # group writer counted it a duplicate but looked for a position of its own,
    # and the request never got an answer on PostgreSQL.
    created = {
        "type": "customer.created",
        "customer_id": "c-0",
        "occurred_at": "2026-01-01T00:00:00Z",
        "actor": {"kind": "api", "id": "a"},
        "data": {"card": {}},
    }
    erased = {
        **created,
        "type": "customer.erased",
        "data": {"reason": "asked", "requested_by": "dpo"},
    }
    with serve_in_thread(store_url) as client:
        assert client.post("/v1/events", json=created).status_code == 200
        assert client.post("/v1/customers/c-0/erase", json={"reason": "asked"}).status_code == 200
        answer = client.post("/v1/events", json=erased, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["appended"] == 0
        assert answer.json()["duplicates"] == 1
        # The same event in an array: the same answer.
        again = client.post("/v1/events", json=[erased], timeout=10).json()
        assert (again["appended"], again["duplicates"]) == (0, 1)


def test_an_erasure_reason_with_nul_is_refused_as_the_document_says(store_url: str) -> None:
    # The document says the body's strings hold no NUL (PostgreSQL text cannot):
    # the server refuses one as invalid input and erases nothing.
    created = {
        "type": "customer.created",
        "customer_id": "c-1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "actor": {"kind": "api", "id": "a"},
        "data": {"card": {"name": "Ann"}},
    }
    with serve_in_thread(store_url) as client:
        assert client.post("/v1/events", json=created).status_code == 200
        refused = client.post("/v1/customers/c-1/erase", json={"reason": "a\x00b"})
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert "reason" in refused.text
        erased = client.post("/v1/customers/c-1/erase", json={"reason": "asked"}).json()
        assert erased["erased"] is True  # the refused request erased nothing
