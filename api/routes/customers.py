"""A customer's resources: the tabs of the card (`GET
/v1/customers/{id}/tabs/{tab}`) and erasure (`POST /v1/customers/{id}/erase`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api.caller import Eraser, Reader
from api.models import EraseBody, Erased, Id, UserQuery
from api.problems import problem_responses
from api.state import app_state
from ledger.kinds import KINDS
from services.customers import erase_customer
from services.tabs import DEFAULT_LIMIT, MAX_LIMIT, PAGE_LIMIT, TabAnswer, tab_answer, tab_request

router = APIRouter()


@router.get(
    "/v1/customers/{customer_id:segment}/tabs/{tab}",
    response_model=TabAnswer,
    responses=problem_responses(400, 401, 403, 404, 422, 503),
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
            description=f"Items per page (default {PAGE_LIMIT}; timeline {DEFAULT_LIMIT}).",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=512, description="The previous page's `next_cursor`."),
    ] = None,
    viewer: UserQuery = None,
) -> Response:
    """One tab of a customer's card, exactly `ledger tab --format json`. An
    unknown customer (no event in the ledger) is 404 `customer_missing`."""
    state = app_state(request)
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


@router.post(
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
    state = app_state(request)
    who = body.requested_by or caller.user or caller.name
    state.ensure_ready()
    result = erase_customer(
        state.services.app(), state.services.policy(), customer_id, body.reason, who
    )
    answer = Erased(customer_id=customer_id, erased=result.erased, position=result.position)
    return Response(answer.model_dump_json(), media_type="application/json")
