"""Customers: the search (`GET /v1/customers?q=`), the tabs of the card (`GET
/v1/customers/{id}/tabs/{tab}`), one order's history (`GET
/v1/customers/{id}/orders/{order_id}`), one dialogue (`GET
/v1/customers/{id}/chats/{dialog_id}`) and erasure (`POST /v1/customers/{id}/erase`).
The views of a customer merged into another redirect (308) to that customer's
(`api.redirects`)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api.caller import Eraser, Reader
from api.models import CustomerSearchAnswer, EraseBody, Erased, Id, UserQuery
from api.problems import problem_responses
from api.redirects import MOVED_RESPONSE, customer_view
from api.state import app_state
from ledger.kinds import KINDS
from services.customers import SEARCH_LIMIT, SEARCH_MAX_LIMIT, erase_customer, find_customers
from services.subjects import Dialogue, OrderHistory, dialogue, order_history
from services.tabs import DEFAULT_LIMIT, MAX_LIMIT, PAGE_LIMIT, TabAnswer, tab_answer, tab_request

router = APIRouter()


@router.get(
    "/v1/customers",
    response_model=CustomerSearchAnswer,
    responses=problem_responses(400, 401, 403, 422, 503),
    tags=["customers"],
)
def search_customers(
    request: Request,
    caller: Reader,
    q: Annotated[
        str,
        Query(
            max_length=256,
            pattern=r"^[^\x00-\x1f\x7f]*$",
            description="A customer id, a phone number in any notation, an e-mail address "
            "or name words (all must match).",
        ),
    ],
    limit: Annotated[
        int,
        Query(
            ge=1, le=SEARCH_MAX_LIMIT, description=f"Customers per page (default {SEARCH_LIMIT})."
        ),
    ] = SEARCH_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=512, description="The previous page's `next_cursor`."),
    ] = None,
) -> Response:
    """Find customers, exactly `ledger customers find --format json`: by id, by phone
    (national numbers in the server's default region), by e-mail (any case), or by
    name words, in customer id order."""
    state = app_state(request)
    state.ensure_ready()
    with state.pool.connection() as conn:
        answer = find_customers(conn, q, limit=limit, cursor=cursor)
    return Response(json.dumps(answer.as_json(), ensure_ascii=False), media_type="application/json")


@router.get(
    "/v1/customers/{customer_id:segment}/tabs/{tab}",
    response_model=TabAnswer,
    responses={**MOVED_RESPONSE, **problem_responses(400, 401, 403, 404, 422, 503)},
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
        people=state.services.people(),
    )
    return customer_view(
        request, customer_id, lambda conn: tab_answer(conn, tab_req).model_dump_json()
    )


Limit = Annotated[
    int | None,
    Query(ge=1, le=MAX_LIMIT, description=f"Items per page (default {PAGE_LIMIT})."),
]
Cursor = Annotated[
    str | None, Query(max_length=512, description="The previous page's `next_cursor`.")
]


@router.get(
    "/v1/customers/{customer_id:segment}/orders/{order_id:segment}",
    response_model=OrderHistory,
    responses={**MOVED_RESPONSE, **problem_responses(400, 401, 403, 404, 422, 503)},
    tags=["tabs"],
)
def get_order(
    request: Request,
    caller: Reader,
    customer_id: Id,
    order_id: Id,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Response:
    """One order as it is now (number, status, total, created, last change) and a
    page of its changes (`field`, `old`, `new`, `occurred_at`, `actor`), newest
    first. 404 when the customer has no such order."""
    people = app_state(request).services.people()
    return customer_view(
        request,
        customer_id,
        lambda conn: order_history(
            conn, customer_id, order_id, limit=limit, cursor=cursor, people=people
        ).model_dump_json(),
    )


@router.get(
    "/v1/customers/{customer_id:segment}/chats/{dialog_id:segment}",
    response_model=Dialogue,
    responses={**MOVED_RESPONSE, **problem_responses(400, 401, 403, 404, 422, 503)},
    tags=["tabs"],
)
def get_dialogue(
    request: Request,
    caller: Reader,
    customer_id: Id,
    dialog_id: Id,
    limit: Limit = None,
    cursor: Cursor = None,
) -> Response:
    """One dialogue (`channel`, `status`, `started_at`, `message_count`, `url`) and
    a page of its messages in the order they were sent (`message_id`, `direction`,
    `author`, `sent_at`, `text`; an erased customer's texts read "[erased]"). 404
    when the customer has no such dialogue."""
    people = app_state(request).services.people()
    return customer_view(
        request,
        customer_id,
        lambda conn: dialogue(
            conn, customer_id, dialog_id, limit=limit, cursor=cursor, people=people
        ).model_dump_json(),
    )


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
