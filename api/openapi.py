"""The OpenAPI document made as strict as the server.

FastAPI describes each route from its signature, which is looser than what the
server accepts: one route serves every tab and every task action, the events
body is read by hand, and the audit history's "exactly one selector" is a rule
across parameters. Generated clients and fuzzers trust the document, so what
the server refuses for a request's shape must be in it. `refine` rewrites the
generated document; the routes themselves stay as they are (the same URLs).

Refusals no schema can express stay in the operations' descriptions: a cursor
the server did not issue, `since` not before `until`, and what depends on stored
state (404 unknown customer or task, 409 a task's status, 422 an event a domain
rule refuses).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from api.models import NO_NUL
from api.problems import PROBLEM_TYPE
from api.redirects import MOVED, MOVED_NOTE
from ledger.events.catalogue import EVENT_TYPES, INBOUND_ADAPTER
from services.tabs import TABS

SECURITY_SCHEME = "accessKey"
_EVENT_PREFIX = "Event_"
# Any JSON value an event may carry in a free-form field (a change's old and
# new): no NUL in strings or keys, integers within 64 bits (ledger.events.limits).
JSON_VALUE = "JsonValue"
_JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value without a NUL character in its strings or keys; "
    "integers within 64 bits (send larger ones as strings).",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": {"$ref": f"#/components/schemas/{JSON_VALUE}"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": f"#/components/schemas/{JSON_VALUE}"},
        },
    ],
}

_TABS_PATH = "/v1/customers/{customer_id}/tabs/{tab}"
_TASK_PATH = "/v1/customers/{customer_id}/tasks/{task_id}/{action}"
_SELECTORS = ("customer", "order", "task", "dialog", "email")
_TIMELINE_ONLY = ("kind", "since", "until")
_SINCE_UNTIL = " `since` must be before `until` when both are given (else 400)."
_CURSOR = " A `cursor` must be a `next_cursor` this server gave (else 400)."


def use_refined_openapi(app: FastAPI) -> None:
    """Serve `app`'s document with error answers as they are on the wire:
    problem+json with the Problem schema (FastAPI would list them as
    application/json, and its default 422 as HTTPValidationError, which this
    API never sends), then `refine`d; made once, on first request."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        problem_ref = {"$ref": "#/components/schemas/Problem"}
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status.startswith(("4", "5")):
                        response["content"] = {PROBLEM_TYPE: {"schema": problem_ref}}
                        if status == "422":
                            response["description"] = "Unprocessable content"
        schemas = document.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        refine(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def refine(document: dict[str, Any]) -> None:
    """Make `document` (FastAPI's, with problem answers) as strict as the server."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _security(document)
    _times(document)
    _redirects(document)
    _tabs(document)
    _task_actions(document, schemas)
    _audit_history(document)
    _events_body(document, schemas)


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, operation)
        for path, operations in document.get("paths", {}).items()
        for operation in operations.values()
    ]


def _security(document: dict[str, Any]) -> None:
    document["components"]["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "An access key (`ledger access new-key`) with the operation's "
            "scope; 401 without a valid key, 403 without the scope. A server started "
            "without an access file (loopback only) needs no key. On a server of many "
            "tenants a key is of one tenant, or of all: an operator key, whose requests "
            "name their tenant with the `X-Ledger-Tenant` header (400 without it); a "
            "request naming another tenant than its key's is 403, an unknown tenant 404, "
            "a tenant being moved 503 (retry).",
        }
    }
    for path, operation in _operations(document):
        responses = operation.get("responses", {})
        if path == "/metrics":
            # A key only when the server runs with --protect-metrics.
            operation["security"] = [{}, {SECURITY_SCHEME: []}]
        elif "401" in responses:
            operation["security"] = [{SECURITY_SCHEME: []}]
        else:
            operation["security"] = []


def _times(document: dict[str, Any]) -> None:
    """`since`/`until`: a date or an RFC 3339 time with a zone, as the server parses them."""
    for _, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] in ("since", "until"):
                parameter["schema"] = {
                    "anyOf": [
                        {"type": "string", "format": "date"},
                        {"type": "string", "format": "date-time"},
                    ],
                    "title": parameter["name"].title(),
                }


def _redirects(document: dict[str, Any]) -> None:
    """A merged-away customer's views: the 308 has no body (FastAPI gives every
    answer its route's media type), and each such operation says so."""
    for _, operation in _operations(document):
        moved = operation.get("responses", {}).get(str(MOVED))
        if moved is None:
            continue
        moved.pop("content", None)
        operation["description"] = operation.get("description", "") + MOVED_NOTE


def _tabs(document: dict[str, Any]) -> None:
    """One operation per shape of tab: the timeline's filters and the tasks tab's
    `as` apply to those tabs only (400 elsewhere)."""
    paths = document["paths"]
    generic = paths.pop(_TABS_PATH)["get"]
    answers = generic["responses"]["200"]["content"]["application/json"]["schema"]
    refs = {ref["$ref"].rsplit("/", 1)[1]: ref for ref in answers.get("anyOf", [])}

    def variant(tab: str | None, keep: set[str], models: list[str]) -> dict[str, Any]:
        operation: dict[str, Any] = copy.deepcopy(generic)
        operation["parameters"] = [
            p for p in operation["parameters"] if p["in"] == "path" or p["name"] in keep
        ]
        name = tab or "other"
        operation["operationId"] = f"get_{name}_tab"
        operation["summary"] = f"The {tab} tab" if tab else "Any other tab"
        extra = _SINCE_UNTIL + _CURSOR if tab == "timeline" else _CURSOR
        operation["description"] = generic.get("description", "") + extra
        found = [refs[m] for m in models if m in refs]
        schema: dict[str, Any] = found[0] if len(found) == 1 else {"anyOf": found}
        operation["responses"]["200"]["content"]["application/json"]["schema"] = schema
        if tab is not None:
            operation["parameters"] = [p for p in operation["parameters"] if p["name"] != "tab"]
        else:
            for p in operation["parameters"]:
                if p["name"] == "tab":
                    p["schema"] = {"type": "string", "enum": others, "title": "Tab"}
        return operation

    common = {"limit", "cursor"}
    others = [t for t in TABS if t not in ("timeline", "tasks")]
    paths[_TABS_PATH.replace("{tab}", "timeline")] = {
        "get": variant("timeline", common | set(_TIMELINE_ONLY), ["TimelineTab"])
    }
    paths[_TABS_PATH.replace("{tab}", "tasks")] = {
        "get": variant("tasks", common | {"as"}, ["TasksTab"])
    }
    paths[_TABS_PATH] = {
        "get": variant(None, common, [f"{t.title()}Tab" for t in others]),
    }


def _task_actions(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """One operation per action: only `edit` takes a body, with at least one change."""
    paths = document["paths"]
    generic = paths.pop(_TASK_PATH)["post"]
    answers = generic["responses"]["200"]["content"]["application/json"]["schema"]
    task_item, deleted = answers["anyOf"]
    schemas[JSON_VALUE] = _JSON_VALUE_SCHEMA
    change = schemas["Change"]
    change["properties"]["field"]["pattern"] = NO_NUL
    change["properties"]["new"] = {"$ref": f"#/components/schemas/{JSON_VALUE}"}
    body = schemas["TaskActionBody"]
    body["properties"]["changes"]["minItems"] = 1
    body["required"] = ["changes"]
    body["properties"]["changes"].pop("default", None)
    for action in ("complete", "reopen", "delete", "edit"):
        operation = copy.deepcopy(generic)
        operation["parameters"] = [p for p in operation["parameters"] if p["name"] != "action"]
        operation["operationId"] = f"{action}_task"
        operation["summary"] = f"{action.title()} a task"
        schema = deleted if action == "delete" else task_item
        operation["responses"]["200"]["content"]["application/json"]["schema"] = schema
        if action == "edit":
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/TaskActionBody"}}
                },
            }
        else:
            operation.pop("requestBody", None)
        paths[_TASK_PATH.replace("{action}", action)] = {"post": operation}


def _audit_history(document: dict[str, Any]) -> None:
    """Exactly one selector: one query object of five optional members, exploded
    into its own parameters on the wire (`?customer=ID`)."""
    operation = document["paths"]["/v1/audit/history"]["get"]
    kept, members = [], {}
    for parameter in operation["parameters"]:
        if parameter["in"] == "query" and parameter["name"] in _SELECTORS:
            # The server refuses an empty id too (400).
            members[parameter["name"]] = {**_plain_string(parameter["schema"]), "minLength": 1}
        else:
            if parameter["name"] == "type":
                parameter["schema"] = {
                    "type": "array",
                    "items": {"type": "string", "enum": list(EVENT_TYPES)},
                    "maxItems": 64,
                    "title": "Type",
                }
            kept.append(parameter)
    selector = {
        "name": "selector",
        "in": "query",
        "required": True,
        "style": "form",
        "explode": True,
        "description": "Exactly one of `customer`, `order`, `task`, `dialog`, `email`, "
        "each its own query parameter (`?customer=ID`); none or several is 400.",
        "schema": {
            "type": "object",
            "properties": members,
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
        },
    }
    operation["parameters"] = [selector, *kept]
    operation["description"] = operation.get("description", "") + _SINCE_UNTIL


def _plain_string(schema: dict[str, Any]) -> dict[str, Any]:
    """The string branch of FastAPI's optional parameter (`anyOf` string, null)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            return {k: v for k, v in branch.items() if k != "title"}
    return {"type": "string"}


def _events_body(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The three forms of an append's body, each event as its contract says."""
    envelope = INBOUND_ADAPTER.json_schema(
        ref_template=f"#/components/schemas/{_EVENT_PREFIX}{{model}}"
    )
    for name, schema in envelope.pop("$defs").items():
        _strict_strings(schema)
        schemas[f"{_EVENT_PREFIX}{name}"] = schema
    # `type` tells the branches apart, so anyOf says the same as pydantic's oneOf,
    # and generators need not check that no other branch matches (27 of them).
    envelope["anyOf"] = envelope.pop("oneOf")
    envelope["title"] = "LedgerEvent"
    envelope["description"] = "Any event a producer may send; `type` selects the payload."
    schemas["LedgerEvent"] = envelope
    event = {"$ref": "#/components/schemas/LedgerEvent"}
    operation = document["paths"]["/v1/events"]["post"]
    operation["requestBody"] = {
        "required": True,
        "description": "One event object, a JSON array of events (`application/json`), "
        "or NDJSON text, one event per line (`application/x-ndjson`). Each event is "
        "checked against its type's contract (`schemas/events/`) and the domain's "
        "rules on what is stored; a rule's refusal is a 422 naming the event and field.",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        event,
                        {"type": "array", "items": event, "minItems": 1},
                    ]
                }
            },
            "application/x-ndjson": {
                "schema": {
                    "type": "string",
                    "description": "One event (a LedgerEvent) as JSON per line.",
                }
            },
        },
    }


def _strict_strings(schema: Any) -> None:
    """What the contracts' JSON Schema cannot say on its own: no NUL in any
    string, and free-form values as JsonValue."""
    if isinstance(schema, list):
        for item in schema:
            _strict_strings(item)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not {"format", "pattern", "const", "enum"} & set(schema):
        schema["pattern"] = NO_NUL
    for key, value in list(schema.items()):
        if key == "properties":
            for name, member in list(value.items()):
                if not set(member) - {"title", "description", "default"}:
                    value[name] = {**member, "$ref": f"#/components/schemas/{JSON_VALUE}"}
                else:
                    _strict_strings(member)
        elif key not in ("discriminator", "const", "enum", "default"):
            _strict_strings(value)
