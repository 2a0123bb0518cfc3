"""`POST /v1/events`: appending a body of events, read within the limits of
bytes and events, stored through the group committer (one event) or a lane of
threads of its own (several)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING

import anyio
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.caller import Ingest
from api.models import AppendResult
from api.problems import MAX_REPORTED_ERRORS, Refused, RejectedEvent, problem_responses
from api.state import app_state_soon, server_state
from ledger.input import InputError, InputItem, read_items
from services.appending import append_items, rejected_fields
from services.bootstrap import Services
from services.errors import Category, ServiceError

if TYPE_CHECKING:
    from services.appending import AppendReport

# A body this small is decoded and counted on the event loop (microseconds);
# a bigger one in a worker thread, so the loop keeps answering meanwhile.
INLINE_BODY = 16 * 1024
JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson")

router = APIRouter()


@router.post(
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
    state = server_state(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES + NDJSON_TYPES:
        raise Refused(415, "send application/json (an event or an array) or application/x-ndjson")
    body = await read_body(request, state.max_body)
    ndjson = media in NDJSON_TYPES
    if len(body) <= INLINE_BODY:
        items = body_items(body, ndjson=ndjson, limit=state.max_items)
    else:
        split = partial(body_items, body, ndjson=ndjson, limit=state.max_items)
        items = await anyio.to_thread.run_sync(split, limiter=state.bulk_lane())
    state = await app_state_soon(request)  # the store: the tenant's, on a server of many
    if not state.ready:
        await run_in_threadpool(state.ensure_ready)
    if isinstance(items, list) and state.group_appends:
        # One event: stored in a transaction shared with other callers' one
        # events (ledger.grouping), with its own outcome. Awaited on the loop:
        # no worker thread is held per waiting caller, and no thread hop; a
        # caller that goes away leaves its event to be stored all the same (as
        # a retry with its event id would find).
        groups = state.running_groups
        if groups is None:
            groups = await run_in_threadpool(state.groups)
        loop = asyncio.get_running_loop()
        report = await groups.submit_on_loop(items[0].raw, loop, skip_invalid=skip_invalid)
        return append_answer(report)
    append = partial(append_body, state.services, items, skip_invalid=skip_invalid)
    answer: Response = await anyio.to_thread.run_sync(append, limiter=state.bulk_lane())
    return answer


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it is over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"the body is over the limit of {limit:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def body_items(body: bytes, *, ndjson: bool, limit: int) -> Iterator[InputItem] | list[InputItem]:
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
                raise Refused(
                    413,
                    f"the body holds more than {limit:,} events, the limit per request; "
                    "send them in several requests (nothing stored)",
                )
    except InputError:
        pass  # malformed within the limit: the append rejects it, naming the line


def append_body(services: Services, items: Iterable[InputItem], *, skip_invalid: bool) -> Response:
    """Append a body of several events and build the answer, on a worker thread:
    both take time in proportion to the body."""
    report = append_items(services.app(), services.policy(), items, skip_invalid=skip_invalid)
    return append_answer(report)


def append_answer(report: AppendReport) -> Response:
    """The answer to an append: what was stored and the first reasons of the
    rejected; a 422 problem when nothing was stored."""
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
