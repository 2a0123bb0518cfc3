"""The audit trail: `GET /v1/audit/history` (one subject's unprojected
history, streamed as NDJSON, JSON or CSV) and `GET /v1/audit/anchor` (the
head of the hash chain), as `ledger audit history` and `ledger audit anchor`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from api.caller import Auditor
from api.models import Anchor
from api.problems import Refused, problem_responses
from api.state import app_state
from api.streaming import QueueWriter, stream
from services.audit import chain_head, has_events, history_query, write_history
from services.errors import Category, ServiceError

FORMATS = {
    "application/x-ndjson": "ndjson",
    "application/json": "json",
    "text/csv": "csv",
}

router = APIRouter()


@router.get(
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
    state = app_state(request)
    output, media = negotiate(request.headers.get("accept"))
    # Messages name the parameters plainly (`since`), as the query spells them.
    query = history_query(
        customer=customer,
        order=order,
        task=task,
        dialog=dialog,
        email=email,
        since=since,
        until=until,
        time_field=time,
        actor=actor,
        types=type or (),
    )
    with state.pool.connection() as conn:
        if not has_events(conn):
            raise ServiceError(Category.UNAVAILABLE, "the ledger has no events table yet")

    def produce(writer: QueueWriter) -> None:
        with state.pool.connection() as conn:
            write_history(conn, query, output, writer)

    return StreamingResponse(stream(produce), media_type=media)


@router.get(
    "/v1/audit/anchor",
    response_model=Anchor,
    responses=problem_responses(401, 403, 503),
    tags=["audit"],
)
def audit_anchor(request: Request, caller: Auditor) -> Anchor:
    """The head of the hash chain, as `ledger audit anchor`."""
    with app_state(request).pool.connection() as conn:
        if not has_events(conn):
            raise ServiceError(Category.UNAVAILABLE, "the ledger has no events table yet")
        head = chain_head(conn)
    return Anchor(position=head.position, hash=head.hash)


def negotiate(accept: str | None) -> tuple[str, str]:
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
        if media in FORMATS:
            return FORMATS[media], media
        if media in ("*/*", "application/*"):
            return "ndjson", "application/x-ndjson"
        if media == "text/*":
            return "csv", "text/csv"
    raise Refused(
        406, "the audit history comes as application/x-ndjson, application/json or text/csv"
    )
