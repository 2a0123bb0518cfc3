"""Duplicates: `GET /v1/customers/{id}/duplicates` (the customers sharing a phone
or e-mail with it) and `POST /v1/customers/{id}/not-duplicates` (a "not a
duplicate" mark, or its withdrawal, as the acting user; scope `merge`)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.caller import Merger, Reader, marking_user
from api.models import DuplicatesAnswer, Id, NotDuplicateAnswer, NotDuplicateBody, UserQuery
from api.problems import problem_responses
from api.redirects import MOVED_RESPONSE, customer_view
from api.state import app_state
from services.duplicates import MarkRequest, find_duplicates, mark_not_duplicate

router = APIRouter()


@router.get(
    "/v1/customers/{customer_id:segment}/duplicates",
    response_model=DuplicatesAnswer,
    responses={**MOVED_RESPONSE, **problem_responses(400, 401, 403, 404, 422, 503)},
    tags=["customers"],
)
def get_duplicates(request: Request, caller: Reader, customer_id: Id) -> Response:
    """The customer's possible duplicates, exactly `ledger customers duplicates ID
    --format json`: customers with the same phone (any notation) or e-mail (any
    case), compared by blind index, each reason's value masked; pairs marked "not
    a duplicate" and erased customers are not listed. 404 `customer_missing` for a
    customer without events."""
    return customer_view(
        request,
        customer_id,
        lambda conn: json.dumps(find_duplicates(conn, customer_id).as_json(), ensure_ascii=False),
    )


@router.post(
    "/v1/customers/{customer_id:segment}/not-duplicates",
    response_model=NotDuplicateAnswer,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    tags=["customers"],
)
def post_not_duplicate(
    request: Request,
    caller: Merger,
    customer_id: Id,
    body: NotDuplicateBody,
    viewer: UserQuery = None,
) -> Response:
    """Mark the customer and `customer_id` "not a duplicate" (or, with `withdraw`,
    take the mark back) as the acting user: the key's user, or `as` with the scope
    `act-as` (open mode: `as`). `customer.not_duplicate` is recorded on both
    customers' streams; the rights policy's `customers.merge` is needed (403
    `right_missing`); 404 `customer_missing` for an unknown customer, 409
    `customer_erased` for an erased one, 409 `mark_exists` / `mark_missing` when
    there is nothing to do, 422 `same_customer` for a customer marked against itself."""
    state = app_state(request)
    user = marking_user(caller, viewer)
    state.ensure_ready()
    result = mark_not_duplicate(
        state.services.app(),
        state.services.policy(),
        MarkRequest(
            customer_id=customer_id,
            other_customer_id=body.customer_id,
            user_id=user,
            reason=body.reason,
            withdraw=body.withdraw,
            source="ledger-api",
        ),
    )
    return Response(json.dumps(result.as_json()), media_type="application/json")
