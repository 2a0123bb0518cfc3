"""Errors as `application/problem+json` (RFC 9457), and the one table that maps
the service layer's error categories to HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import Category, RejectedField, ServiceError

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
    code: str | None = Field(
        default=None,
        description="The rule that refused the event, by a stable name "
        "(e.g. `task_is_completed`); null when the event broke its contract.",
    )


# The body of every error answer (RFC 9457); no docstring, which the OpenAPI
# document would show as the schema's description.
class Problem(BaseModel):  # noqa: D101
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str | None = Field(
        default=None,
        description="A stable name of the rule or the missing thing "
        "(e.g. `task_is_completed`, `customer_missing`), for machines.",
    )
    field: str | None = Field(default=None, description="With `code`: the field at fault.")
    request_id: str | None = None
    errors: list[RejectedEvent] | None = None
    errors_omitted: int | None = Field(
        default=None,
        ge=0,
        description=f"With `errors`: how many more reasons were left out (at most "
        f"{MAX_REPORTED_ERRORS} are listed, those of the first events rejected).",
    )


class Refused(Exception):
    """A request refused for its shape or its caller, not by the service layer
    (401, 403, 406, 413, 415): answered as a problem with `status`."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


def rejected_events(errors: list[RejectedField]) -> list[RejectedEvent]:
    """The reasons as the answer lists them."""
    return [RejectedEvent(**vars(e)) for e in errors]


def problem(
    status: int,
    detail: str,
    *,
    errors: list[RejectedField] | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
    field: str | None = None,
) -> JSONResponse:
    """The problem+json answer with `status` and `detail` (and a 503's `Retry-After`)."""
    shown: list[RejectedEvent] | None = None
    omitted: int | None = None
    if errors is not None:
        shown = rejected_events(errors[:MAX_REPORTED_ERRORS])
        omitted = len(errors) - len(shown)
    body = Problem(
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code,
        field=field if code else None,
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


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """For the OpenAPI document: every error answer in `statuses` is a Problem."""
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


def service_problem(exc: ServiceError, request_id: str | None) -> JSONResponse:
    """The answer to a failure of the service layer: a problem by its category."""
    return problem(
        STATUS[exc.category],
        exc.message,
        errors=exc.errors or None,
        request_id=request_id,
        code=exc.code,
        field=exc.field,
    )


def refused_problem(exc: Refused, request_id: str | None) -> JSONResponse:
    """The answer to a refused request (a 401 says how to authenticate)."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem(exc.status, exc.detail, request_id=request_id, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Every error `app` answers as a problem: the service layer's by category,
    `Refused` by its status, FastAPI's request validation as 400 (JSON that
    does not parse) or 422 naming the parameter, and Starlette's (404, 405)."""

    def rid(request: Request) -> str | None:
        return getattr(request.state, "request_id", None)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return service_problem(exc, rid(request))

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return refused_problem(exc, rid(request))

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
