"""The HTTP API: `create_app()` builds the ASGI application `ledger serve` runs.

Every endpoint translates HTTP to a call on the service layer
(`services/`) and its answer back to JSON; no rule lives here. Errors
become problem+json through one table (`api/problems.py`).

Endpoints that touch the database are plain `def`s: FastAPI runs them in its
thread pool, each with a pooled connection, because the drivers block.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access import AccessFile, AccessKey, LiveAccess
from api.openapi import refine
from api.pool import ConnectionPool
from api.problems import (
    MAX_REPORTED_ERRORS,
    PROBLEM_TYPE,
    STATUS,
    RejectedEvent,
    problem,
    problem_responses,
)
from api.segments import RawSegments
from ledger.audit.common import AuditError, events_table_exists
from ledger.audit.history import HistoryFilter, iter_history, parse_time, selector_from_options
from ledger.audit.render import write_history
from ledger.audit.verify import current_anchor
from ledger.grouping import AppendGroups
from ledger.input import InputError, InputItem, read_items
from ledger.kinds import KINDS
from ledger.printable import printable
from projections.models import TabAnswer, TaskItem
from projections.paging import DEFAULT_LIMIT as PAGE_LIMIT
from projections.paging import MAX_LIMIT
from projections.timeline import DEFAULT_LIMIT as TIMELINE_LIMIT
from services.appending import append_items, append_with, rejected_fields
from services.bootstrap import Services, prepare_store, store_ready
from services.customers import erase_customer
from services.errors import Category, ServiceError, classify
from services.operations import projections_status
from services.tabs import tab_answer, tab_request
from services.tasks import FieldChange, TaskActionRequest, task_action

if TYPE_CHECKING:
    from ledger.appending.report import AppendReport

log = logging.getLogger("ledger.api")

DEFAULT_MAX_BODY = 16 * 1024 * 1024
# Events in one POST /v1/events: the work and the answer of one request stay
# bounded (a body of tiny invalid events would otherwise cost seconds per MB).
DEFAULT_MAX_ITEMS = 10_000
# A body this small is decoded and counted on the event loop (microseconds);
# a bigger one in a worker thread, so the loop keeps answering meanwhile.
_INLINE_BODY = 16 * 1024
# Threads for appending bodies of several events, a lane of their own: however
# many are in flight, the shared thread pool (probes, reads) keeps its threads.
_BULK_APPEND_THREADS = 40
JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson")

# Path ids: the event contracts' Id bounds, and no control characters (a NUL
# would reach the database).
Id = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
UserQuery = Annotated[
    str | None,
    Query(
        alias="as",
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="tasks: the user whose rights decide the actions (default: the key's user)",
    ),
]


# -- who is calling ---------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """The key a request came with; `key` is None when the server runs open."""

    key: AccessKey | None

    @property
    def name(self) -> str:
        return self.key.name if self.key else "-"

    @property
    def user(self) -> str | None:
        return self.key.user if self.key else None

    def allows(self, scope: str) -> bool:
        return self.key is None or self.key.allows(scope)


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


# Dependencies are `async def`: they do no I/O, and a sync dependency would cost
# every request an extra hop through the thread pool.
def _scope(name: str) -> Callable[[Request], Awaitable[Caller]]:
    async def check(request: Request) -> Caller:
        caller: Caller = _authenticate(request)
        if not caller.allows(name):
            raise _Refused(403, f"the key {caller.name!r} lacks the scope {name!r}")
        return caller

    return check


def _authenticate(request: Request) -> Caller:
    state: AppState = request.app.state.ledger
    if state.access is None:
        return Caller(None)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _Refused(401, "an access key is required: Authorization: Bearer TOKEN")
    key = state.access.verify(token.strip())
    if key is None:
        raise _Refused(401, "the access key is not valid")
    request.state.key_name = key.name
    return Caller(key)


# The caller of an endpoint, checked for one scope (or, for task actions, only
# authenticated: which scope applies depends on the acting user).
Ingest = Annotated["Caller", Depends(_scope("ingest"))]
Reader = Annotated["Caller", Depends(_scope("read"))]
Auditor = Annotated["Caller", Depends(_scope("audit"))]
Operator = Annotated["Caller", Depends(_scope("ops"))]
Eraser = Annotated["Caller", Depends(_scope("erase"))]


async def _authenticated(request: Request) -> Caller:
    return _authenticate(request)


Anyone = Annotated["Caller", Depends(_authenticated)]


def _acting_user(caller: Caller, requested: str | None) -> str:
    """Who a task action acts as: the key's own user (`tasks`), or the user the
    request names (`act-as`)."""
    if caller.key is None:
        if requested is None:
            raise ServiceError(Category.USAGE, "name the acting user with the `as` parameter")
        return requested
    if requested is not None and requested != caller.user:
        if not caller.allows("act-as"):
            raise _Refused(403, f"the key {caller.name!r} lacks the scope 'act-as'")
        return requested
    if not caller.allows("tasks"):
        if caller.allows("act-as"):
            raise ServiceError(Category.USAGE, "name the acting user with the `as` parameter")
        raise _Refused(403, f"the key {caller.name!r} lacks the scope 'tasks'")
    if caller.user is None:
        raise _Refused(403, f"the key {caller.name!r} acts as no user; give it one")
    return caller.user


# -- application state ------------------------------------------------------------------


@dataclass
class AppState:
    services: Services
    access: LiveAccess | None
    pool: ConnectionPool
    max_body: int
    protect_metrics: bool
    group_appends: bool = True
    max_items: int = DEFAULT_MAX_ITEMS
    _ready: bool = False
    _ready_lock: threading.Lock = field(default_factory=threading.Lock)
    _groups: AppendGroups | None = None
    _bulk: anyio.CapacityLimiter | None = None

    @property
    def ready(self) -> bool:
        """`ensure_ready` has succeeded (then requests skip calling it)."""
        return self._ready

    @property
    def running_groups(self) -> AppendGroups | None:
        """The group committer if started (starting it opens a connection)."""
        return self._groups

    def groups(self) -> AppendGroups:
        """The group committer of one-event appends, started on first use."""
        with self._ready_lock:
            if self._groups is None:
                self._groups = AppendGroups(
                    self.services.app(), self.services.policy, append_with
                )
            return self._groups

    def bulk_lane(self) -> anyio.CapacityLimiter:
        """The threads bulk appends run on; made on the event loop, on first use."""
        if self._bulk is None:
            self._bulk = anyio.CapacityLimiter(_BULK_APPEND_THREADS)
        return self._bulk

    def close(self) -> None:
        with self._ready_lock:
            if self._groups is not None:
                self._groups.close()
                self._groups = None
        self.pool.close()

    def ensure_ready(self) -> None:
        """The schema in place (created on first use unless LEDGER_AUTO_MIGRATE=0);
        checked once, then trusted until the process restarts."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with self.pool.connection() as conn:
                try:
                    prepare_store(conn)
                except ServiceError as exc:
                    if exc.category is Category.USAGE:  # schema missing: not ready yet
                        raise ServiceError(Category.UNAVAILABLE, exc.message) from exc
                    raise
            self._ready = True


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.ledger
    return state


# -- request and response models --------------------------------------------------------


class AppendResult(BaseModel):
    appended: int
    duplicates: int
    rejected: list[RejectedEvent]
    rejected_omitted: int = Field(
        default=0,
        ge=0,
        description=f"Reasons left out of `rejected` (at most {MAX_REPORTED_ERRORS} "
        "are listed, those of the first events rejected).",
    )
    first_position: int | None
    last_position: int | None


class Change(BaseModel):
    field: str = Field(min_length=1, max_length=256)
    new: Any


class TaskActionBody(BaseModel):
    changes: list[Change] = Field(default_factory=list)


# Stored as event data, which PostgreSQL text cannot hold a NUL in.
_NO_NUL = r"^[^\x00]*$"


class EraseBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, pattern=_NO_NUL)
    # Who asked (the data subject's request, a DPO); default: the key's user or name.
    requested_by: str | None = Field(default=None, min_length=1, max_length=256, pattern=_NO_NUL)


class Erased(BaseModel):
    customer_id: str
    erased: bool  # false: it already was, and nothing changed
    position: int | None


class Deleted(BaseModel):
    deleted: Literal[True] = True


class Anchor(BaseModel):
    position: int
    hash: str


class ProjectionsStatus(BaseModel):
    head: int
    projections: list[dict[str, Any]]


class Health(BaseModel):
    status: str


# -- the application --------------------------------------------------------------------


def create_app(
    services: Services,
    *,
    access: AccessFile | LiveAccess | None = None,
    cors_origins: Sequence[str] = (),
    max_body: int = DEFAULT_MAX_BODY,
    pool_size: int = 8,
    protect_metrics: bool = False,
    group_appends: bool = True,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> FastAPI:
    """The API over `services`' store. Without `access` every caller is let in
    (the caller of this function makes sure that happens on loopback only).
    An access file is watched: see `LiveAccess`."""
    if isinstance(access, AccessFile):
        access = LiveAccess(access)
    state = AppState(
        services=services,
        access=access,
        pool=ConnectionPool(services.url, pool_size),
        max_body=max_body,
        protect_metrics=protect_metrics,
        group_appends=group_appends,
        max_items=max_items,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from services.metrics import watch_store

        watch_store(services.url)
        try:
            await run_in_threadpool(state.ensure_ready)
        except ServiceError as exc:
            # Serve anyway: /readyz answers 503 until the schema is in place.
            log.warning("not ready: %s", exc.message)
        yield
        state.close()
        services.close()

    app = FastAPI(
        title="Interaction ledger",
        version="1",
        summary="The append-only history behind a CRM's 'Previous interactions'.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load from a CDN that firewalled deployments cannot
        # reach; the contract itself is /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.ledger = state
    _errors(app)
    _routes(app)
    # The customer card page (HTML) over the same services; imported here
    # because it builds on this module.
    from api.page import page_router

    app.include_router(page_router())
    _problem_openapi(app)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id"],
            max_age=600,
        )
    # Ids may hold "/" (api.segments): routing sees the raw path's segments.
    app.add_middleware(RawSegments)
    # Outermost, so CORS answers and errors get a request id and a log line too.
    app.add_middleware(RequestIdMiddleware)
    return app


def _problem_openapi(app: FastAPI) -> None:
    """Error answers in the document as they are on the wire: problem+json with
    the Problem schema (FastAPI would list them as application/json, and its
    default 422 as HTTPValidationError, which this API never sends)."""
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


def openapi_json() -> str:
    """The OpenAPI document `/openapi.json` serves, as committed in schemas/."""
    document = create_app(Services()).openapi()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _errors(app: FastAPI) -> None:
    def rid(request: Request) -> str | None:
        return getattr(request.state, "request_id", None)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return problem(
            STATUS[exc.category],
            exc.message,
            errors=exc.errors or None,
            request_id=rid(request),
        )

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem(exc.status, exc.detail, request_id=rid(request), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "malformed")
            return problem(400, f"the body is not valid JSON: {reason}", request_id=rid(request))
        # loc is e.g. ("query", "limit") or ("path", "customer_id"): name the parameter.
        loc = [str(p) for p in first.get("loc", ())]
        where = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else "request")
        detail = f"{where}: {first.get('msg', 'invalid')}"
        return problem(422, detail, request_id=rid(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, detail, request_id=rid(request), headers=headers)


def _routes(app: FastAPI) -> None:
    # -- append -------------------------------------------------------------------------

    @app.post(
        "/v1/events",
        response_model=AppendResult,
        responses=problem_responses(400, 401, 403, 413, 415, 422, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "One event object, a JSON array of events, or NDJSON "
                "(one event per line).",
                "content": {
                    "application/json": {"schema": {}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
        tags=["events"],
    )
    async def append_events(
        request: Request,
        caller: Ingest,
        skip_invalid: bool = False,
    ) -> Response:
        """Append events: all-or-nothing unless `skip_invalid=true`. Retrying a
        request is safe: an event id stored before counts as a duplicate."""
        state = _state(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in JSON_TYPES + NDJSON_TYPES:
            raise _Refused(
                415, "send application/json (an event or an array) or application/x-ndjson"
            )
        body = await _read_body(request, state.max_body)
        ndjson = media in NDJSON_TYPES
        if len(body) <= _INLINE_BODY:
            items = _items(body, ndjson=ndjson, limit=state.max_items)
        else:
            split = partial(_items, body, ndjson=ndjson, limit=state.max_items)
            items = await anyio.to_thread.run_sync(split, limiter=state.bulk_lane())
        if not state.ready:
            await run_in_threadpool(state.ensure_ready)
        if isinstance(items, list) and state.group_appends:
            # One event: stored in a transaction shared with other callers' one
            # events (ledger.grouping), with its own outcome. Awaited on the loop:
            # no worker thread is held per waiting caller, and no thread hop.
            groups = state.running_groups
            if groups is None:
                groups = await run_in_threadpool(state.groups)
            outcome = groups.submit(items[0].raw, skip_invalid=skip_invalid)
            # Shielded: a caller that goes away must not cancel the future the
            # writer thread will set (the event is stored all the same, as a
            # retry with its event id would find).
            report = await asyncio.shield(asyncio.wrap_future(outcome))
            return _append_answer(report)
        append = partial(_append_body, state.services, items, skip_invalid=skip_invalid)
        answer: Response = await anyio.to_thread.run_sync(append, limiter=state.bulk_lane())
        return answer

    # -- tabs ---------------------------------------------------------------------------

    @app.get(
        "/v1/customers/{customer_id:segment}/tabs/{tab}",
        response_model=TabAnswer,
        responses=problem_responses(400, 401, 403, 422, 503),
        tags=["tabs"],
    )
    def get_tab(
        request: Request,
        caller: Reader,
        customer_id: Id,
        tab: Annotated[str, Path(max_length=32)],
        kind: Annotated[list[Literal[KINDS]] | None, Query()] = None,  # type: ignore[valid-type]
        since: Annotated[str | None, Query(max_length=64)] = None,
        until: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_LIMIT,
                description=f"Items per page (default {PAGE_LIMIT}; timeline {TIMELINE_LIMIT}).",
            ),
        ] = None,
        cursor: Annotated[
            str | None,
            Query(max_length=512, description="The previous page's `next_cursor`."),
        ] = None,
        viewer: UserQuery = None,
    ) -> Response:
        """One tab of a customer's card, exactly `ledger tab --format json`. An
        unknown customer has empty items."""
        state = _state(request)
        if tab == "tasks" and viewer is None:
            viewer = caller.user
        tab_req = tab_request(
            customer_id,
            tab,
            kinds=kind or (),
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
            viewer=viewer,
            policy=state.services.policy(),
            names={"as": "as"},
        )
        state.ensure_ready()
        with state.pool.connection() as conn:
            answer = tab_answer(conn, tab_req)
        return Response(answer.model_dump_json(), media_type="application/json")

    # -- task actions -------------------------------------------------------------------

    @app.post(
        "/v1/customers/{customer_id:segment}/tasks/{task_id:segment}/{action}",
        response_model=TaskItem | Deleted,
        responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
        tags=["tasks"],
    )
    def act_on_task(
        request: Request,
        caller: Anyone,
        customer_id: Id,
        task_id: Id,
        action: Literal["complete", "reopen", "delete", "edit"],
        body: TaskActionBody | None = None,
        viewer: UserQuery = None,
        idempotency_key: Annotated[
            str | None, Header(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")
        ] = None,
    ) -> Response:
        """Complete, reopen, delete or edit a task as the acting user. The
        server builds the event from the task's current state; the domain
        checks it as any appended event. The same `Idempotency-Key` stores the
        action once and answers every request with it as the first (422 when
        the key was used for another action, task or changes)."""
        state = _state(request)
        user = _acting_user(caller, viewer)
        changes = tuple(FieldChange(c.field, c.new) for c in (body.changes if body else []))
        state.ensure_ready()
        with state.pool.connection() as conn:
            result = task_action(
                state.services.app(),
                conn,
                state.services.policy(),
                TaskActionRequest(
                    customer_id=customer_id,
                    task_id=task_id,
                    action=action,
                    user_id=user,
                    changes=changes,
                    idempotency_key=idempotency_key,
                    source="ledger-api",
                ),
            )
        answer: BaseModel = result.task if result.task is not None else Deleted()
        return Response(answer.model_dump_json(), media_type="application/json")

    # -- erasure ------------------------------------------------------------------------

    @app.post(
        "/v1/customers/{customer_id:segment}/erase",
        response_model=Erased,
        responses=problem_responses(400, 401, 403, 404, 422, 503),
        tags=["privacy"],
    )
    def erase(request: Request, caller: Eraser, customer_id: Id, body: EraseBody) -> Response:
        """Erase the customer's personal data (docs/privacy.md): `customer.erased`
        is stored and the customer's key destroyed in one transaction; every reader
        shows its personal values as erased, and no new event is accepted. A
        repeated erasure is a no-op (`erased: false`)."""
        state = _state(request)
        who = body.requested_by or caller.user or caller.name
        state.ensure_ready()
        result = erase_customer(
            state.services.app(), state.services.policy(), customer_id, body.reason, who
        )
        answer = Erased(customer_id=customer_id, erased=result.erased, position=result.position)
        return Response(answer.model_dump_json(), media_type="application/json")

    # -- audit --------------------------------------------------------------------------

    @app.get(
        "/v1/audit/history",
        responses={
            200: {
                "description": "The events in position order, with field-level changes.",
                "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **problem_responses(400, 401, 403, 406, 503),
        },
        tags=["audit"],
    )
    def audit_history(
        request: Request,
        caller: Auditor,
        customer: Annotated[str | None, Query(max_length=128)] = None,
        order: Annotated[str | None, Query(max_length=128)] = None,
        task: Annotated[str | None, Query(max_length=128)] = None,
        dialog: Annotated[str | None, Query(max_length=128)] = None,
        email: Annotated[str | None, Query(max_length=128)] = None,
        since: Annotated[str | None, Query(max_length=64)] = None,
        until: Annotated[str | None, Query(max_length=64)] = None,
        time: Literal["occurred", "recorded"] = "occurred",
        actor: Annotated[str | None, Query(max_length=128)] = None,
        type: Annotated[list[str] | None, Query(max_length=64)] = None,
    ) -> Response:
        """The unprojected history of one customer, order, task, dialogue or
        email, streamed; the same rows as `ledger audit history`."""
        state = _state(request)
        output, media = _negotiate(request.headers.get("accept"))
        try:
            selector = selector_from_options(
                {
                    "customer": customer,
                    "order": order,
                    "task": task,
                    "dialog": dialog,
                    "email": email,
                }
            )
            filters = HistoryFilter(
                since=parse_time(since, "since") if since is not None else None,
                until=parse_time(until, "until") if until is not None else None,
                time_field=time,
                actor_id=actor,
                types=tuple(dict.fromkeys(type or ())),
            )
        except AuditError as exc:
            # The audit parser speaks in CLI options (--customer); here they are
            # query parameters of the same names.
            raise ServiceError(Category.USAGE, str(exc).replace("--", "")) from None
        with state.pool.connection() as conn:
            if not events_table_exists(conn):
                raise ServiceError(Category.UNAVAILABLE, "the ledger has no events table yet")

        def produce(write: _QueueWriter) -> None:
            with state.pool.connection() as conn:
                write_history(
                    iter_history(conn, selector, filters), output, write, selector, filters
                )

        return StreamingResponse(_stream(produce), media_type=media)

    @app.get(
        "/v1/audit/anchor",
        response_model=Anchor,
        responses=problem_responses(401, 403, 503),
        tags=["audit"],
    )
    def audit_anchor(request: Request, caller: Auditor) -> Anchor:
        """The head of the hash chain, as `ledger audit anchor`."""
        with _state(request).pool.connection() as conn:
            if not events_table_exists(conn):
                raise ServiceError(Category.UNAVAILABLE, "the ledger has no events table yet")
            head = current_anchor(conn)
        return Anchor(position=head.position, hash=head.hash)

    # -- operations ---------------------------------------------------------------------

    @app.get(
        "/v1/projections",
        response_model=ProjectionsStatus,
        responses=problem_responses(401, 403, 503),
        tags=["operations"],
    )
    def projections(request: Request, caller: Operator) -> ProjectionsStatus:
        """Each read model's position, lag and state, as `ledger projections status`."""
        state = _state(request)
        state.ensure_ready()
        with state.pool.connection() as conn:
            return ProjectionsStatus(**projections_status(conn))

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses=problem_responses(503),
        tags=["operations"],
    )
    def readyz(request: Request) -> Health:
        """The store answers and the schema is in place."""
        state = _state(request)
        with state.pool.connection() as conn:
            if not store_ready(conn):
                raise ServiceError(Category.UNAVAILABLE, "the ledger's schema is not in place")
        return Health(status="ready")

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text"},
            # Only with --protect-metrics.
            **problem_responses(401, 403),
        },
        tags=["operations"],
    )
    def metrics(request: Request) -> Response:
        """Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from services.metrics import scrape_registry

        if _state(request).protect_metrics:
            caller = _authenticate(request)
            if not caller.allows("ops"):
                raise _Refused(403, f"the key {caller.name!r} lacks the scope 'ops'")
        return Response(generate_latest(scrape_registry()), media_type=CONTENT_TYPE_LATEST)


# -- bodies -----------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"the body is over the limit of {limit:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _items(body: bytes, *, ndjson: bool, limit: int) -> Iterator[InputItem] | list[InputItem]:
    """The body's events, each numbered by its 0-based index in the body; a body
    of one event object is a list of that one item. More than `limit` events is
    refused before any is parsed; the others are parsed as they are appended."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServiceError(
            Category.REJECTED, f"body is not UTF-8 text: {exc.reason}; nothing stored"
        ) from None
    stripped = text.lstrip()
    if not ndjson:
        if not stripped:
            raise ServiceError(Category.REJECTED, "the body is empty; nothing stored")
        if stripped[0] == "{":
            return [InputItem(0, stripped)]
        if stripped[0] != "[":
            raise ServiceError(
                Category.REJECTED,
                "the body must be an event object or a JSON array of events; nothing stored",
            )
    _refuse_over(text, limit)
    return (InputItem(index, item.raw) for index, item in enumerate(read_items(io.StringIO(text))))


def _refuse_over(text: str, limit: int) -> None:
    """413 for a body of more than `limit` events, found by the input scanner
    alone (it finds where each event ends, decoding nothing), before anything
    is parsed or stored: a skip-invalid append commits batch by batch."""
    try:
        for count, _ in enumerate(read_items(io.StringIO(text)), 1):
            if count > limit:
                raise _Refused(
                    413,
                    f"the body holds more than {limit:,} events, the limit per request; "
                    "send them in several requests (nothing stored)",
                )
    except InputError:
        pass  # malformed within the limit: the append rejects it, naming the line


def _append_body(services: Services, items: Iterable[InputItem], *, skip_invalid: bool) -> Response:
    """Append a body of several events and build the answer, on a worker thread:
    both take time in proportion to the body."""
    report = append_items(services.app(), services.policy(), items, skip_invalid=skip_invalid)
    return _append_answer(report)


def _append_answer(report: AppendReport) -> Response:
    errors = rejected_fields(report)
    if not report.stored:
        raise ServiceError(
            Category.REJECTED,
            f"{len(report.rejected)} of the events rejected; nothing stored",
            errors,
        )
    shown = errors[:MAX_REPORTED_ERRORS]
    result = AppendResult(
        appended=report.appended,
        duplicates=report.duplicates,
        rejected=[RejectedEvent(**vars(e)) for e in shown],
        rejected_omitted=len(errors) - len(shown),
        first_position=report.first_position,
        last_position=report.last_position,
    )
    return Response(result.model_dump_json(), media_type="application/json")


# -- streaming ----------------------------------------------------------------------------

_FORMATS = {
    "application/x-ndjson": "ndjson",
    "application/json": "json",
    "text/csv": "csv",
}


def _negotiate(accept: str | None) -> tuple[str, str]:
    """The audit format for an Accept header: NDJSON unless JSON or CSV is asked for."""
    if not accept:
        return "ndjson", "application/x-ndjson"
    ranked = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        ranked.append((q, media.lower()))
    for q, media in sorted(ranked, key=lambda r: -r[0]):
        if q <= 0:
            continue
        if media in _FORMATS:
            return _FORMATS[media], media
        if media in ("*/*", "application/*"):
            return "ndjson", "application/x-ndjson"
        if media == "text/*":
            return "csv", "text/csv"
    raise _Refused(
        406, "the audit history comes as application/x-ndjson, application/json or text/csv"
    )


class _Closed(Exception):
    """The client went away: stop producing."""


class _QueueWriter:
    """What `write_history` writes to: chunks handed to the response, bounded so
    a slow client slows the reader instead of filling memory."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[str | BaseException | None] = queue.Queue(maxsize=64)
        self.closed = threading.Event()
        self._buffer: list[str] = []
        self._size = 0

    def write(self, text: str, /) -> int:
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= 32 * 1024:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self.put("".join(self._buffer))
            self._buffer, self._size = [], 0

    def put(self, item: str | BaseException | None) -> None:
        while not self.closed.is_set():
            try:
                self.chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Closed


def _stream(produce: Callable[[_QueueWriter], None]) -> Iterator[str]:
    """Run `produce(writer)` in its own thread and yield what it writes. The
    status line is already sent, so a failure midway ends the body early (and
    is logged), the only honest signal left."""
    writer = _QueueWriter()

    def run() -> None:
        try:
            produce(writer)
            writer.flush()
            writer.put(None)
        except _Closed:
            pass
        except BaseException as exc:
            try:
                writer.put(exc)
            except _Closed:
                pass

    thread = threading.Thread(target=run, name="audit-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = writer.chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                log.error("audit history stream failed: %s", item)
                return
            yield item
    finally:
        writer.closed.set()


# -- request ids, logs and HTTP metrics -------------------------------------------------


class RequestIdMiddleware:
    """Gives every request an id (the caller's `X-Request-Id` when sane), echoes
    it, logs one line per request (never headers: they carry tokens) and
    counts the request by route and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from services.metrics import HTTP_REQUESTS, HTTP_SECONDS

        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # What no handler answered: a known failure from below (say, the
            # database went away) gets its problem, anything else a 500 without
            # details; answered here, inside, so it carries the request id.
            if answered:
                raise
            known = classify(exc)
            if known is None:
                log.error("%s failed: %s", request_id, type(exc).__name__, exc_info=exc)
                response = problem(
                    500, "internal error; the server log has the details", request_id=request_id
                )
            else:
                response = problem(STATUS[known.category], known.message, request_id=request_id)
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path_format", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(elapsed)
            key = scope["state"].get("key_name", "-")
            log.info(
                "%s %s %s %d %.1fms key=%s",
                request_id,
                method,
                _loggable(scope["path"]),
                status,
                elapsed * 1000,
                key,
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = bytes(value).decode("latin-1")
            if 0 < len(text) <= 128 and all(33 <= ord(c) < 127 for c in text):
                return text
    return uuid.uuid4().hex


def _loggable(path: str, limit: int = 200) -> str:
    """A path for the log: control characters escaped, long ids cut."""
    return printable(path[:limit]) + ("..." if len(path) > limit else "")


__all__ = ["DEFAULT_MAX_BODY", "PROBLEM_TYPE", "create_app"]
