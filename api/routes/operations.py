"""Running the service: `GET /v1/projections` (each read model's position,
lag and state), the probes `/healthz` and `/readyz`, and `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.caller import Operator, authenticate
from api.models import Health, ProjectionsStatus
from api.problems import problem_responses
from api.state import app_state, server_state
from services.bootstrap import store_ready
from services.errors import Category, ServiceError
from services.operations import projections_status

router = APIRouter()


@router.get(
    "/v1/projections",
    response_model=ProjectionsStatus,
    responses=problem_responses(401, 403, 503),
    tags=["operations"],
)
def projections(request: Request, caller: Operator) -> ProjectionsStatus:
    """Each read model's position, lag and state, as `ledger projections status`."""
    state = app_state(request)
    state.ensure_ready()
    with state.pool.connection() as conn:
        return ProjectionsStatus(**projections_status(conn))


@router.get("/healthz", response_model=Health, tags=["operations"])
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses=problem_responses(503),
    tags=["operations"],
)
def readyz(request: Request) -> Health:
    """The store answers and the schema is in place."""
    state = server_state(request)
    if state.tenants is not None:  # many stores: the tenant directory answers
        state.tenants.check_directory()
        return Health(status="ready")
    with state.pool.connection() as conn:
        if not store_ready(conn):
            raise ServiceError(Category.UNAVAILABLE, "the ledger's schema is not in place")
    return Health(status="ready")


@router.get(
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

    if server_state(request).protect_metrics:
        # Whatever the tenant: the process's metrics are no tenant's store.
        authenticate(request, store=False).require("ops")
    return Response(generate_latest(scrape_registry()), media_type=CONTENT_TYPE_LATEST)
