"""The OpenAPI document says what the server refuses: a request it calls valid
has the shape the server accepts (the fuzz run in test_http_fuzz.py checks the
same from generated requests)."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from ledger.events import EVENT_TYPES
from projections.tabs import TABS
from services.bootstrap import Services
from tests.http_support import serve_in_thread


def document() -> dict[str, Any]:
    return create_app(Services()).openapi()


def test_each_tab_shape_is_its_own_operation_with_only_its_parameters() -> None:
    paths = document()["paths"]
    base = "/v1/customers/{customer_id}/tabs/"

    def names(path: str) -> set[str]:
        return {p["name"] for p in paths[path]["get"]["parameters"]}

    assert names(base + "timeline") == {"customer_id", "kind", "since", "until", "limit", "cursor"}
    assert names(base + "tasks") == {"customer_id", "as", "limit", "cursor"}
    assert names(base + "{tab}") == {"customer_id", "tab", "limit", "cursor"}
    tab = next(p for p in paths[base + "{tab}"]["get"]["parameters"] if p["name"] == "tab")
    assert tab["schema"]["enum"] == [t for t in TABS if t not in ("timeline", "tasks")]


def test_audit_history_needs_exactly_one_selector_and_known_types() -> None:
    operation = document()["paths"]["/v1/audit/history"]["get"]
    selector = next(p for p in operation["parameters"] if p["name"] == "selector")
    assert (selector["style"], selector["explode"], selector["required"]) == ("form", True, True)
    schema = selector["schema"]
    assert set(schema["properties"]) == {"customer", "order", "task", "dialog", "email"}
    assert (schema["minProperties"], schema["maxProperties"]) == (1, 1)
    assert schema["additionalProperties"] is False
    types = next(p for p in operation["parameters"] if p["name"] == "type")
    assert types["schema"]["items"]["enum"] == list(EVENT_TYPES)


def test_only_edit_takes_changes_and_at_least_one_without_nul() -> None:
    doc = document()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    base = "/v1/customers/{customer_id}/tasks/{task_id}/"
    for action in ("complete", "reopen", "delete"):
        assert "requestBody" not in paths[base + action]["post"]
    edit = paths[base + "edit"]["post"]
    assert edit["requestBody"]["required"] is True
    body = schemas["TaskActionBody"]
    assert body["required"] == ["changes"]
    assert body["properties"]["changes"]["minItems"] == 1
    change = schemas["Change"]["properties"]
    assert change["field"]["pattern"] == "^[^\\x00]*$"
    assert change["new"] == {"$ref": "#/components/schemas/JsonValue"}


def test_events_body_has_its_three_forms() -> None:
    doc = document()
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]
    forms = body["content"]["application/json"]["schema"]["anyOf"]
    event = {"$ref": "#/components/schemas/LedgerEvent"}
    assert forms == [event, {"type": "array", "items": event, "minItems": 1}]
    assert body["content"]["application/x-ndjson"]["schema"]["type"] == "string"
    mapping = doc["components"]["schemas"]["LedgerEvent"]["discriminator"]["mapping"]
    assert set(mapping) == set(EVENT_TYPES)


def test_bearer_keys_are_a_security_scheme_and_metrics_may_refuse() -> None:
    doc = document()
    assert doc["components"]["securitySchemes"]["accessKey"]["scheme"] == "bearer"
    paths = doc["paths"]
    assert paths["/v1/audit/anchor"]["get"]["security"] == [{"accessKey": []}]
    assert paths["/healthz"]["get"]["security"] == []
    metrics = paths["/metrics"]["get"]
    assert metrics["security"] == [{}, {"accessKey": []}]
    assert {"401", "403"} <= set(metrics["responses"])


def test_rejected_events_name_a_missing_event_id_and_type_as_null(sqlite_url: str) -> None:
    # The Problem schema requires both members of each error; an event without
    # them must say null, not leave them out.
    with serve_in_thread(sqlite_url) as client:
        answer = client.post("/v1/events", json=[{"customer_id": "c1"}])
    assert answer.status_code == 422
    first = answer.json()["errors"][0]
    assert first["index"] == 0
    assert first["event_id"] is None and first["type"] is None
    schema = document()["components"]["schemas"]["RejectedEvent"]
    assert {"event_id", "type"} <= set(schema["required"])


def test_a_merged_customers_views_document_their_redirect() -> None:
    paths = document()["paths"]
    base = "/v1/customers/{customer_id}"
    redirecting = [
        f"{base}/tabs/timeline",
        f"{base}/tabs/tasks",
        f"{base}/tabs/{{tab}}",
        f"{base}/duplicates",
        f"{base}/orders/{{order_id}}",
        f"{base}/chats/{{dialog_id}}",
    ]
    for path in redirecting:
        operation = paths[path]["get"]
        moved = operation["responses"]["308"]
        assert "content" not in moved, path
        assert moved["headers"]["Location"]["required"] is True
        assert "308 Permanent Redirect" in operation["description"]
    # Only views redirect: what is sent under an absorbed id keeps that id.
    for path, operations in paths.items():
        for method, operation in operations.items():
            if "308" in operation["responses"]:
                assert method == "get" and path in redirecting, path
    for action in ("merge", "unmerge"):
        operation = paths[f"{base}/{action}"]["post"]
        assert operation["security"] == [{"accessKey": []}]
        assert {"200", "403", "404", "409"} <= set(operation["responses"])
