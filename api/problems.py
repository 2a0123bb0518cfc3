"""Errors as `application/problem+json` (RFC 9457), and the one table that maps
the service layer's error categories to HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ledger.service import Category, RejectedField

PROBLEM_TYPE = "application/problem+json"

STATUS: dict[Category, int] = {
    Category.REJECTED: 422,
    Category.NOT_FOUND: 404,
    Category.FORBIDDEN: 403,
    Category.CONFLICT: 409,
    Category.UNAVAILABLE: 503,
    Category.USAGE: 400,
}

TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class RejectedEvent(BaseModel):
    """One reason one event was rejected; `index` is its 0-based place in the body."""

    index: int
    event_id: str | None
    type: str | None
    field: str
    reason: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    request_id: str | None = None
    errors: list[RejectedEvent] | None = None


def rejected_events(errors: list[RejectedField]) -> list[RejectedEvent]:
    return [RejectedEvent(**vars(e)) for e in errors]


def problem(
    status: int,
    detail: str,
    *,
    errors: list[RejectedField] | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        request_id=request_id,
        errors=rejected_events(errors) if errors is not None else None,
    )
    # Absent members stay absent, but a rejected event's `event_id` and `type` are
    # required (null when the event had none), as the document says.
    content: dict[str, Any] = {k: v for k, v in body.model_dump().items() if v is not None}
    return JSONResponse(content, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


# For the OpenAPI document: every error answer is a Problem.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": Problem, "description": TITLES[s]} for s in statuses}
