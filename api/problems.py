"""Errors as `application/problem+json` (RFC 9457), and the one table that maps
the service layer's error categories to HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.errors import Category, RejectedField

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

# Reasons one answer reports at most; the count of the rest goes with them, so
# an answer stays small however many events a request had rejected.
MAX_REPORTED_ERRORS = 100


# Every 503 says when to try again (`Retry-After`, in seconds): the database was
# away or every connection busy, and either usually passes within moments; a
# client that waits this long before its retry does not add to a busy pool.
RETRY_AFTER_SECONDS = 1


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
    errors_omitted: int | None = Field(
        default=None,
        ge=0,
        description=f"With `errors`: how many more reasons were left out (at most "
        f"{MAX_REPORTED_ERRORS} are listed, those of the first events rejected).",
    )


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
    shown: list[RejectedEvent] | None = None
    omitted: int | None = None
    if errors is not None:
        shown = rejected_events(errors[:MAX_REPORTED_ERRORS])
        omitted = len(errors) - len(shown)
    body = Problem(
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        request_id=request_id,
        errors=shown,
        errors_omitted=omitted,
    )
    # Absent members stay absent, but a rejected event's `event_id` and `type` are
    # required (null when the event had none), as the document says.
    content: dict[str, Any] = {k: v for k, v in body.model_dump().items() if v is not None}
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), **(headers or {})}
    return JSONResponse(content, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


# For the OpenAPI document: every error answer is a Problem.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: _problem_response(s) for s in statuses}


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"model": Problem, "description": TITLES[status]}
    if status == 503:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response
