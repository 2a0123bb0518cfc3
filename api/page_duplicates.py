"""A customer's possible duplicates on the page: `GET /customers/{id}/duplicates`
(the card's "Possible duplicates (N)" notice leads here), read with
`find_duplicates`, the function behind the JSON endpoint; and its "Not a
duplicate" forms, `POST /customers/{id}/not-duplicates`, which call
`mark_not_duplicate` as the acting user, then come back to the list with what
happened (post/redirect/get)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.models import Id
from api.page_common import read_form, run_in_thread, visit
from api.page_flash import refusal_notice
from api.page_merging import NOT_MERGING, absorbed_redirect
from api.page_tasks import PAGE_SOURCE
from api.page_view import Notice, customer_path, plain_text, render_not_found, render_view
from api.problems import STATUS
from services.duplicates import MarkRequest, find_duplicates, mark_not_duplicate
from services.errors import ServiceError
from services.merging import customer_name
from services.tabs import card_header

router = APIRouter(include_in_schema=False)


@router.get("/customers/{customer_id:segment}/duplicates")
def duplicates_page(request: Request, customer_id: Id) -> Response:
    """The customers sharing a phone or e-mail with this one: names, masked
    reasons, links to their cards, and a "Not a duplicate" form for each."""
    v = visit(request)
    refusal = v.reader_refusal()
    if refusal is not None:
        return refusal
    moved = absorbed_redirect(v, customer_id, "/duplicates")
    if moved is not None:
        return moved
    try:
        v.state.ensure_ready()
        with v.state.pool.connection() as conn:
            header = card_header(conn, customer_id)
            answer = find_duplicates(conn, customer_id).as_json()
    except ServiceError as exc:
        if exc.code == "customer_missing":
            return v.html(render_not_found(customer_id=customer_id, viewer=v.viewer()), 404)
        return v.problem("Cannot show this page", exc.message, STATUS[exc.category])
    notice = v.take_flash()
    card = customer_path(customer_id)
    response = v.html(
        render_view(
            "duplicates.html",
            viewer=v.viewer(),
            answer=answer,
            customer=plain_text(header.name) if header.name else plain_text(customer_id),
            card_url=card,
            here=card,
            card_path=customer_path,
            notice=notice,
        )
    )
    v.clear_flash(response)
    return response


@router.post("/customers/{customer_id:segment}/not-duplicates")
async def not_duplicate_form(request: Request, customer_id: Id) -> Response:
    """A "Not a duplicate" form, posted."""
    form = await read_form(request)
    return await run_in_thread(_mark, request, customer_id, form)


def _mark(request: Request, customer_id: str, form: Mapping[str, str]) -> Response:
    v = visit(request)
    refused = v.form_refusal(form)
    if refused is not None:
        return refused
    back = f"{customer_path(customer_id)}/duplicates"
    user = v.who.merging_user
    if user is None:
        return v.redirect_with(back, NOT_MERGING)
    other, reason = form.get("other", ""), form.get("reason", "").strip()
    if not other or not reason:
        return v.redirect_with(back, Notice("Say why they are two people.", "error"))
    try:
        v.state.ensure_ready()
        # Named before the mark, as a merge names its customers: a failed look-up
        # then stores nothing rather than report a stored mark as refused.
        with v.state.pool.connection() as conn:
            shown = customer_name(conn, other) or other
        mark_not_duplicate(
            v.state.services.app(),
            v.state.services.policy(),
            MarkRequest(customer_id, other, user, reason, source=PAGE_SOURCE),
        )
    except ServiceError as exc:
        if exc.code == "right_missing":
            notice = Notice("You are not allowed to mark customers as not duplicates.", "error")
        elif exc.code == "mark_exists":
            notice = Notice("These customers are already marked as not duplicates.", "error")
        else:
            notice = refusal_notice(exc)
        return v.redirect_with(back, notice)
    return v.redirect_with(back, Notice(f"Marked {plain_text(shown)} as not a duplicate."))
