"""The HTTP API: `create_app()` builds the ASGI application `ledger serve` runs.

This module only composes: the application's state (`api/state.py`), the
error handlers (`api/problems.py`), the JSON API's routers, one per resource
(`api/routes/`), the card page's (`api/page.py`), the OpenAPI document
(`api/openapi.py`) and the middleware (`api/middleware.py`); one-event appends
take a lean path to their endpoint (`api/lane.py`). Every endpoint
translates HTTP to a call on the service layer (`services/`) and its answer
back; no rule lives here. Errors become problem+json through one table
(`api/problems.py`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api import page, routes
from api.access import AccessFile, LiveAccess
from api.lane import PATH, EventsLane
from api.middleware import RequestIdMiddleware
from api.openapi import use_refined_openapi
from api.pool import ConnectionPool
from api.problems import PROBLEM_TYPE, add_error_handlers
from api.segments import RawSegments
from api.state import DEFAULT_MAX_BODY, DEFAULT_MAX_ITEMS, OPEN_MODE_USER, AppState
from api.tenancy import DEFAULT_PER_SERVER, NoStorePool, TenantStores
from ledger.environment import APPEND_WRITERS, DEFAULT_API_POOL_SIZE, DEFAULT_APPEND_WRITER
from ledger.tenants import Tenant
from services.bootstrap import Services
from services.errors import ServiceError
from services.tenants import directory

log = logging.getLogger("ledger.api")


def create_app(
    services: Services,
    *,
    access: AccessFile | LiveAccess | None = None,
    cors_origins: Sequence[str] = (),
    max_body: int = DEFAULT_MAX_BODY,
    pool_size: int = DEFAULT_API_POOL_SIZE,
    protect_metrics: bool = False,
    group_appends: bool = True,
    append_writer: str = DEFAULT_APPEND_WRITER,
    max_items: int = DEFAULT_MAX_ITEMS,
    page_user: str = OPEN_MODE_USER,
    tenants_url: str | None = None,
    tenants_per_server: int = DEFAULT_PER_SERVER,
) -> FastAPI:
    """The API over `services`' store, or with `tenants_url` over every tenant
    of that directory (`api.tenancy`; `services` then gives the rights policy,
    the people file and the kept appenders of each tenant's). Without `access`
    every caller is let in (the caller of this function makes sure that
    happens on loopback only). An access file is watched: see `LiveAccess`."""
    if append_writer not in APPEND_WRITERS:
        raise ValueError(f"append_writer: one of {APPEND_WRITERS}, not {append_writer!r}")
    if isinstance(access, AccessFile):
        access = LiveAccess(access)
    state = AppState(
        services=services,
        access=access,
        pool=ConnectionPool(services.url, pool_size) if tenants_url is None else NoStorePool(),
        max_body=max_body,
        protect_metrics=protect_metrics,
        group_appends=group_appends,
        append_writer=append_writer,
        max_items=max_items,
        page_user=page_user,
    )
    if tenants_url is not None:
        state.tenants = TenantStores(
            directory(tenants_url),
            partial(_tenant_state, state, tenants_url, pool_size),
            pool_size=pool_size,
            per_server=tenants_per_server,
        )

    app = LedgerAPI(
        title="Interaction ledger",
        version="1",
        summary="The append-only history behind a CRM's 'Previous interactions'.",
        lifespan=partial(_lifespan, state),
        # Swagger UI and ReDoc load from a CDN that firewalled deployments cannot
        # reach; the contract itself is /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.ledger = state
    add_error_handlers(app)
    # The JSON API, then the customer card page (HTML) over the same services.
    for router in (*routes.ROUTERS, *page.ROUTERS):
        app.include_router(router)
    use_refined_openapi(app)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Request-Id",
                "X-Ledger-Tenant",
            ],
            expose_headers=["X-Request-Id"],
            max_age=600,
        )
    # Ids may hold "/" (api.segments): routing sees the raw path's segments.
    app.add_middleware(RawSegments)
    # Outermost, so CORS answers and errors get a request id and a log line too.
    app.add_middleware(RequestIdMiddleware)
    app.events_lane = EventsLane(
        app, _route(routes.events.router, "POST", PATH), cors=bool(cors_origins)
    )
    return app


class LedgerAPI(FastAPI):
    """FastAPI, except that the one-event appends `events_lane` takes skip the
    middleware stack and the routing (`api.lane`) and go through the request-id
    middleware on their own."""

    events_lane: EventsLane | None = None
    _lane_app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.events_lane
        if lane is not None and lane.takes(scope):
            if self._lane_app is None:
                self._lane_app = RequestIdMiddleware(lane)
            await self._lane_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _tenant_state(
    server: AppState,
    tenants_url: str,
    pool_size: int,
    found: Tenant,
    slots: threading.BoundedSemaphore,
) -> AppState:
    """A tenant's state on a server of many: its own services, pool and group
    committer; the server's keys, limits and sessions. Its reads share its
    database server's `slots` and keep one connection idle; it keeps one
    appender between bulk appends."""
    template = server.services
    return AppState(
        services=Services(
            # The tenant's own rights policy first (`Services.policy` would
            # put a deployment-wide option before it).
            rights_option=found.rights or template.rights_option,
            people_option=template.people_option,
            kept_appenders=min(1, template.kept_appenders),
            tenant_option=found.tenant,
            tenants_option=tenants_url,
            _tenant=found,
        ),
        access=server.access,
        pool=ConnectionPool(found.url, pool_size, slots=slots, keep_idle=1),
        max_body=server.max_body,
        protect_metrics=server.protect_metrics,
        group_appends=server.group_appends,
        append_writer=server.append_writer,
        max_items=server.max_items,
        page_user=server.page_user,
        sessions=server.sessions,
        server=server,
    )


def _route(router: APIRouter, method: str, path: str) -> APIRoute:
    """The route of `router` for `method` on `path` (what routing puts in the scope)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ()):
            return route
    raise LookupError(f"no route {method} {path}")


@asynccontextmanager
async def _lifespan(state: AppState, app: FastAPI) -> AsyncIterator[None]:
    """Watch the store for the metrics and check the schema before serving;
    close the pool and the services after."""
    from services.metrics import warm_up, watch_store, watch_tenants

    if state.tenants is not None:
        # Many stores: each tenant's state is made on first use (api.tenancy).
        watch_tenants(state.tenants.directory)
        await run_in_threadpool(warm_up)
        try:
            await run_in_threadpool(state.tenants.check_directory)
        except ServiceError as exc:
            log.warning("not ready: %s", exc.message)
        if state.uses_writer_process:
            await run_in_threadpool(state.writer_process)  # not on the first append
        yield
        state.tenants.close()
        state.close_writer()
        return
    watch_store(state.services.url)
    await run_in_threadpool(warm_up)
    try:
        await run_in_threadpool(state.ensure_ready)
    except ServiceError as exc:
        # Serve anyway: /readyz answers 503 until the schema is in place.
        log.warning("not ready: %s", exc.message)
    if state.uses_writer_process:
        try:  # the writer starts now, not on the first append
            await run_in_threadpool(state.groups)
        except ServiceError as exc:  # then on the first append, which says why
            log.warning("the append writer did not start: %s", exc.message)
    yield
    state.close()
    state.services.close()


def openapi_json() -> str:
    """The OpenAPI document `/openapi.json` serves, as committed in schemas/."""
    document = create_app(Services()).openapi()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_MAX_ITEMS", "PROBLEM_TYPE", "create_app", "openapi_json"]
