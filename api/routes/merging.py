"""Merging customers: `POST /v1/customers/{id}/merge` (merge others into the
path's customer, or preview it) and `POST /v1/customers/{id}/unmerge` (undo
one), as the acting user; scope `merge`, the rights policy's `customers.merge`
(docs/merging.md). A merged-away customer's views redirect (api.redirects)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.caller import Merger, marking_user
from api.models import Id, MergeAnswer, MergeBody, UnmergeAnswer, UnmergeBody, UserQuery
from api.problems import problem_responses
from api.state import app_state
from services.merging import MergeRequest, UnmergeRequest, merge_customers, unmerge_customers

router = APIRouter()

SOURCE = "ledger-api"


@router.post(
    "/v1/customers/{customer_id:segment}/merge",
    response_model=MergeAnswer,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    tags=["customers"],
)
def post_merge(
    request: Request,
    caller: Merger,
    customer_id: Id,
    body: MergeBody,
    viewer: UserQuery = None,
) -> Response:
    """Merge the customers `absorb` into the path's (priority) customer as the
    acting user: the key's user, or `as` with the scope `act-as` (open mode:
    `as`); the rights policy's `customers.merge` is needed (403 `right_missing`).
    Nothing stored is copied: `customer.merged` is stored on the priority's
    stream and `customer.absorbed` on each absorbed one's, all or nothing; the
    priority's tabs then hold every merged customer's items, and the absorbed
    customers' views redirect there (308). With `dry_run` the answer is the
    preview and nothing is stored. The answer (200, also for `dry_run`): the
    resulting card, the items per tab that move, the card fields that differ
    (`conflicts`, each customer's value; `keep` chooses, default the priority's),
    whether a confirmation is needed and why, and `applied`.

    Refused, nothing stored: 400 `reason_missing` (no reason, unless `dry_run`)
    and 400 for a `keep` naming a field no card of the merge has, or a customer
    not in the merge or without that field; 404 `customer_missing` for an unknown
    customer; 409 `confirmation_needed` for customers that share no phone number
    or e-mail address with the priority customer, without `confirm`; 409
    `same_customer` (a customer into itself), `listed_twice`, `customer_absorbed`
    (the priority customer is merged into another: merge into that one),
    `already_absorbed` (an absorbed customer is merged already), `holds_merged`
    (an absorbed customer holds merged customers), `customer_erased`."""
    state = app_state(request)
    user = marking_user(caller, viewer)
    state.ensure_ready()
    merge = MergeRequest(
        customer_id=customer_id,
        absorb=tuple(body.absorb),
        user_id=user,
        reason=body.reason,
        keep=dict(body.keep),
        dry_run=body.dry_run,
        confirm=body.confirm,
        source=SOURCE,
    )
    with state.pool.connection() as conn:
        outcome = merge_customers(state.services.app(), conn, state.services.policy(), merge)
    return Response(
        json.dumps(outcome.as_json(), ensure_ascii=False), media_type="application/json"
    )


@router.post(
    "/v1/customers/{customer_id:segment}/unmerge",
    response_model=UnmergeAnswer,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    tags=["customers"],
)
def post_unmerge(
    request: Request,
    caller: Merger,
    customer_id: Id,
    body: UnmergeBody,
    viewer: UserQuery = None,
) -> Response:
    """Undo the merge of `customer_id` (the body's) into the path's customer, as
    the acting user (as for a merge; the right `customers.merge`, 403
    `right_missing`): `customer.unmerged` and `customer.released` are stored, and
    each customer's tabs are again exactly their own, with what arrived since
    under each id; the released customer's views no longer redirect. 200
    `{"customer_id", "released", "applied": true}`; 400 `reason_missing` for a
    blank reason; 404 `customer_missing`; 409 `not_merged` (not merged into this
    customer, e.g. undone already), `undo_window_passed` (older than
    `LEDGER_UNDO_WINDOW`), `customer_erased`."""
    state = app_state(request)
    user = marking_user(caller, viewer)
    state.ensure_ready()
    undo = UnmergeRequest(
        customer_id=customer_id,
        released=body.customer_id,
        user_id=user,
        reason=body.reason,
        source=SOURCE,
    )
    with state.pool.connection() as conn:
        result = unmerge_customers(state.services.app(), conn, state.services.policy(), undo)
    return Response(json.dumps(result.as_json(), ensure_ascii=False), media_type="application/json")
