"""The API fuzzed from its own contract: Schemathesis generates requests from the
committed `schemas/openapi.json` and sends them to a live `ledger serve`-equivalent
server (uvicorn on a free loopback port) holding the demo data, on both stores.

Every answer must be in the document (status, media type, body schema and headers),
no answer may be a 5xx, and every error must be application/problem+json. A
request the document calls valid must be accepted, except for the refusals that
depend on stored state or on values no schema can know, listed in `_legitimate`.

The suite runs a few examples per operation (about 15 s for both stores on two
cores). A longer run, with Schemathesis' coverage phase (boundary values and
invalid requests of each parameter) as well (docs/http.md):

    LEDGER_FUZZ_EXAMPLES=500 LEDGER_FUZZ_COVERAGE=1 \
        .venv/bin/pytest -n 2 tests/e2e/test_http_fuzz.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from api.access import SCOPES, new_key
from ledger.demo import demo_events
from ledger.events.catalogue import ContractError, parse_inbound
from tests.cli_runner import run_ledger
from tests.conftest import _fresh_pg_schema
from tests.http_support import serve_in_thread

ROOT = Path(__file__).parents[2]
EXAMPLES = int(os.environ.get("LEDGER_FUZZ_EXAMPLES", "12"))
COVERAGE = os.environ.get("LEDGER_FUZZ_COVERAGE", "0") == "1"
USER = "u-1"  # a demo agent: the key's own user for task actions


def _config() -> SchemathesisConfig:
    config = SchemathesisConfig.from_dict(
        {
            "generation": {
                "max-examples": EXAMPLES,
                "mode": "all",
                # Reproducible in CI: the same requests on every run.
                "deterministic": True,
                "database": "none",
                # The key is ours (below): no generated Authorization values.
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": COVERAGE}},
        }
    )
    return config


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    # The document gives NDJSON bodies as text (see _only_rules_refused).
    return str(value).encode("utf-8")


SCHEMA = schemathesis.openapi.from_path(ROOT / "schemas" / "openapi.json", config=_config())

# Ids that exist once the demo is stored, mixed into the generated path
# parameters so the fuzzer reaches real customers and tasks, not only 404s.
_DEMO_TASKS = sorted(
    {(e["customer_id"], e["data"]["task_id"]) for e in demo_events() if e["type"] == "task.created"}
)


@SCHEMA.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    if not isinstance(path_parameters, dict) or "customer_id" not in path_parameters:
        return st.just(path_parameters)
    if "task_id" in path_parameters:
        known = st.sampled_from(_DEMO_TASKS).map(
            lambda ids: {**path_parameters, "customer_id": ids[0], "task_id": ids[1]}
        )
    else:
        known = st.sampled_from(sorted({c for c, _ in _DEMO_TASKS})).map(
            lambda c: {**path_parameters, "customer_id": c}
        )
    return st.one_of(st.just(path_parameters), known)


@SCHEMA.hook
def flatmap_body(context: Any, body: Any) -> Any:
    # Merges and undos of demo customers too, not only of unknown ids: merged
    # customers' views then answer 308 to the other operations.
    operation = getattr(context, "operation", None)
    path = getattr(operation, "path", "")
    if not isinstance(body, dict):
        return st.just(body)
    customers = st.sampled_from(sorted({c for c, _ in _DEMO_TASKS}))
    if path.endswith("/merge") and isinstance(body.get("absorb"), list):
        known = customers.map(lambda c: {**body, "absorb": [c], "reason": "fuzz", "confirm": True})
    elif path.endswith("/unmerge") and "customer_id" in body:
        known = customers.map(lambda c: {**body, "customer_id": c})
    else:
        return st.just(body)
    return st.one_of(st.just(body), known)


@dataclass(frozen=True)
class Live:
    base: str
    token: str


def _serve(url: str, directory: Path) -> Iterator[Live]:
    demo = run_ledger("demo", db=url)
    assert demo.returncode == 0, demo.stderr
    access = directory / "access.toml"
    token = new_key(access, "fuzzer", list(SCOPES), USER).token
    from api.access import load_access

    with serve_in_thread(url, access=load_access(access)) as client:
        yield Live(str(client.base_url).rstrip("/"), token)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    directory = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "sqlite":
        yield from _serve(f"sqlite:///{directory / 'ledger.db'}", directory)
    else:
        with _fresh_pg_schema() as url:
            yield from _serve(url, directory)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@SCHEMA.parametrize()
def test_api_answers_as_documented(case: Case, live: Live) -> None:
    headers = {"Authorization": f"Bearer {live.token}"}
    response = case.call(base_url=live.base, headers=headers)
    case.validate_response(response, checks=CHECKS)
    status = response.status_code
    if status >= 400:
        media = response.headers.get("content-type", [""])[0]
        assert media == "application/problem+json", f"{status} {media}: {response.text}"
    meta = case.meta
    positive = meta is not None and meta.generation.mode is GenerationMode.POSITIVE
    if positive and status >= 400:
        assert _legitimate(case, status, response.json()), (
            f"a request the document calls valid was refused: {status} {response.text}\n"
            f"{case.as_curl_command()}"
        )


def _legitimate(case: Case, status: int, problem: dict[str, Any]) -> bool:
    """Refusals of schema-valid requests that are right all the same: they depend
    on what is stored, or on values no schema can express (each is said in the
    operation's description). Auth refusals are never right here: the key has
    every scope, and the rights policy allows everything."""
    path = case.operation.path
    detail = str(problem.get("detail", ""))
    adding = path.endswith(("/{customer_id}/notes", "/{customer_id}/tasks"))
    marking = path.endswith("/{customer_id}/not-duplicates")
    if marking or path.endswith("/{customer_id}/duplicates"):
        # Marks depend on what is stored, as the operation's description says: an
        # unknown or erased customer (404, 409), a mark already standing or none to
        # withdraw (409), a customer marked against itself (422 `same_customer`).
        code = problem.get("code")
        return (
            (status == 404 and code == "customer_missing")
            or (
                marking
                and status == 409
                and code in ("mark_exists", "mark_missing", "customer_erased")
            )
            or (marking and status == 422 and code == "same_customer")
        )
    if path.endswith(("/{customer_id}/merge", "/{customer_id}/unmerge")):
        return _merge_refusal(path.endswith("/merge"), status, problem)
    if status == 404:
        # An unknown customer, task, order or dialogue (most generated ids are):
        # a tab or an addition of an unknown customer is 404 `customer_missing`.
        if problem.get("code") == "customer_missing" and ("/tabs/" in path or adding):
            return True
        return path.endswith(("/erase", "/orders/{order_id}", "/chats/{dialog_id}")) or (
            "/tasks/{task_id}/" in path
        )
    if status == 409 and adding:
        # The fuzz run erases customers too: nothing is added to an erased one.
        return problem.get("code") == "customer_erased"
    if status == 422 and adding:
        # A due time no schema can check, or an Idempotency-Key generated
        # requests share, already used for another addition.
        return problem.get("code") in ("bad_time", "key_reused")
    if status == 409:
        # The task's status forbids the action (complete a completed task).
        return "/tasks/{task_id}/" in path
    if status == 422 and "/tasks/{task_id}/" in path:
        # The Idempotency-Key already stored another action (generated requests
        # share keys): refused, as the operation's description says.
        return [e.get("field") for e in problem.get("errors", [])] == ["idempotency_key"]
    if status == 400 and detail.startswith("bad cursor"):
        # A cursor is opaque: only a `next_cursor` the server gave is one.
        return (
            "/tabs/" in path
            or path == "/v1/customers"
            or path.endswith(("/orders/{order_id}", "/chats/{dialog_id}"))
        )
    if status == 400 and "must be before" in detail:
        # `since` not before `until`: a rule across two parameters.
        return "/tabs/" in path or path == "/v1/audit/history"
    if status == 422 and path == "/v1/events":
        # Each rejected event must be one the contract accepts on its own: then a
        # domain rule on stored state refused it (an unknown customer, a second
        # customer.created). One the contract refuses was not schema-valid.
        return _only_rules_refused(case.body, problem.get("errors", []))
    return False


# The rules a merge breaks (409), as the operation's description lists them:
# they depend on what is stored, or on the path's customer and the body's
# together (a customer into itself).
_MERGE_CONFLICTS = {
    "same_customer",
    "listed_twice",
    "customer_absorbed",
    "already_absorbed",
    "holds_merged",
    "customer_erased",
    "confirmation_needed",
}
_UNMERGE_CONFLICTS = {"not_merged", "undo_window_passed", "customer_erased"}


def _merge_refusal(merging: bool, status: int, problem: dict[str, Any]) -> bool:
    """A merge or an undo refused as its description says: an unknown customer
    (most generated ids are), a rule of merging, a blank reason (a merge needs
    one unless it is a dry run), or a `keep` naming a field or customer the
    stored cards do not have."""
    code = problem.get("code")
    if status == 404:
        return code == "customer_missing"
    if status == 409:
        return code in (_MERGE_CONFLICTS if merging else _UNMERGE_CONFLICTS)
    if status == 400 and code == "reason_missing":
        return True
    return merging and status == 400 and code in ("keep_unknown", "keep_outside", "keep_missing")


def _only_rules_refused(body: Any, errors: list[dict[str, Any]]) -> bool:
    if isinstance(body, str):
        # NDJSON: OpenAPI 3.1 has no schema for each line (3.2's itemSchema has),
        # so the document can only say "text, one event per line", and generated
        # text is rarely events. Its refusal is expected; that it is a problem
        # document in the schema is checked all the same.
        return True
    events = body if isinstance(body, list) else [body]
    for error in errors:
        try:
            parse_inbound(events[error["index"]])
        except ContractError:
            return False
    return bool(errors)
