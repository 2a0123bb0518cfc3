"""Merging customers on the page: the preview, `GET /customers/{id}/merge?absorb=`
(a possible duplicate's "Review merge" link leads here), its form, `POST
/customers/{id}/merge`, which calls `merge_customers` as the acting user, and
the card's "Undo merge" forms, `POST /customers/{id}/unmerge`
(`unmerge_customers`); both come back with what happened (post/redirect/get).

A customer merged into another has no card of its own any more: its card and
its sub-pages answer 303 to the priority customer's (`absorbed_redirect`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from api.models import Id
from api.page_common import Visit, read_form, run_in_thread, visit
from api.page_flash import merge_refusal
from api.page_tasks import PAGE_SOURCE
from api.page_time import Clock
from api.page_view import Notice, customer_path, plain_text, render_not_found, render_view
from api.problems import STATUS
from ledger.summaries import value_text as summary_value
from services.errors import Category, ServiceError
from services.merging import (
    MergedCustomer,
    MergeOutcome,
    MergeRequest,
    UnmergeRequest,
    customer_name,
    merge_customers,
    preview_merge,
    resolve,
    undo_window,
    unmerge_customers,
)
from services.tabs import require_customer

router = APIRouter(include_in_schema=False)

# A visitor whose key has no scope `merge` (a key for task actions alone included).
NOT_MERGING = Notice("Your access key may read these cards but not merge them.", "error")

KEEP = "keep."  # a form field `keep.<card field>` names the customer whose value stays
REASON_CHARS = 1000  # the merge reason's input limit
UNDO_REASON_CHARS = 200  # the undo reason's: a short note
_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")  # what a customer id in a path may be
# What each tab's items are called, one and many ("3 tasks, 1 order").
_NOUNS: dict[str, tuple[str, str]] = {
    "timeline": ("timeline entry", "timeline entries"),
    "tasks": ("task", "tasks"),
    "visits": ("visit", "visits"),
    "segments": ("segment change", "segment changes"),
    "chats": ("chat", "chats"),
    "emails": ("e-mail", "e-mails"),
    "orders": ("order", "orders"),
    "card": ("card change", "card changes"),
}
_FIRST_FIELDS = ("name", "phone", "email")  # shown first on the resulting card
# The query parameters of a card that still mean the same on the priority's card.
_CARD_PARAMS = ("tab", "tz", "kind")


def absorbed_redirect(
    v: Visit, customer_id: str, rest: str = "", *, tell: bool = True
) -> Response | None:
    """The 303 to the priority customer's page (`rest`: the part after the card's
    path) when `customer_id` is merged into one, else None. `tell`: with a flash
    notice saying so (for pages that show one: the card, the duplicates list)."""
    try:
        v.state.ensure_ready()
        with v.state.pool.connection() as conn:
            priority = resolve(conn, customer_id)
            if priority is None:
                return None
            name = customer_name(conn, customer_id)
    except ServiceError:
        return None  # the page's own read says what is wrong
    query = v.request.query_params
    if tell and not rest:
        params = [(k, val) for k, val in query.multi_items() if k in _CARD_PARAMS]
    else:
        params = list(query.multi_items())
    target = customer_path(priority) + rest + (f"?{urlencode(params)}" if params else "")
    if not tell:
        response = RedirectResponse(target, status_code=303)
        v.set_session(response, v.who.session)
        return response
    who = f"{plain_text(name)} ({plain_text(customer_id)})" if name else plain_text(customer_id)
    return v.redirect_with(target, Notice(f"{who} was merged into this card."))


def moved_text(moved: Mapping[str, int]) -> str:
    """How many items move, per tab, in words: "83 timeline entries, 3 tasks and
    1 order"; "nothing" when none."""
    parts = [
        f"{count:,} {_NOUNS[tab][0 if count == 1 else 1]}"
        for tab, count in moved.items()
        if count and tab in _NOUNS
    ]
    if not parts:
        return "nothing"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def window_text(window: timedelta) -> str:
    """An undo window in words: "30 days", "12 hours", "90 minutes"."""
    seconds = int(window.total_seconds())
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n:,} {unit}{'' if n == 1 else 's'}"
    return f"{seconds:,} second{'' if seconds == 1 else 's'}"


def since_text(clock: Clock, when: str) -> str:
    """A merge's date in the viewer's zone: "6 Dec 2026"."""
    moment = clock.moment(when)
    return "—" if moment is None else f"{moment.day} {moment:%b %Y}"


def merged_here(
    merged: Sequence[MergedCustomer], clock: Clock, window: timedelta | None
) -> list[dict[str, Any]]:
    """The card's "Merged here" notice: each customer merged in, by name, since
    when, and whether its merge can still be undone."""
    return [
        {
            "customer_id": m.customer_id,
            "name": plain_text(m.name) if m.name else plain_text(m.customer_id),
            "since": since_text(clock, m.merged_at),
            "since_iso": clock.iso(m.merged_at),
            "undoable": m.undoable,
            "window": None if window is None else window_text(window),
        }
        for m in merged
    ]


def _keep(items: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The `keep.<field>` choices among a query's or a form's fields."""
    return {
        plain_text(name[len(KEEP) :]): value
        for name, value in items
        if name.startswith(KEEP) and len(name) > len(KEEP) and value
    }


def _preview_url(priority: str, absorb: str, keep: Mapping[str, str], confirm: bool) -> str:
    # A choice of the priority's own value is the default: left out.
    chosen = sorted((KEEP + f, c) for f, c in keep.items() if c != priority)
    params = [("absorb", absorb), *chosen]
    if confirm:
        params.append(("confirm", "yes"))
    return f"{customer_path(priority)}/merge?{urlencode(params)}"


def _field_order(name: str) -> tuple[int, str]:
    """Name, phone, e-mail first, then the other card fields by name."""
    first = _FIRST_FIELDS.index(name) if name in _FIRST_FIELDS else len(_FIRST_FIELDS)
    return first, name


def _card_rows(card: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, value in words) of the resulting card, in `_field_order`."""
    return [
        (f, plain_text(summary_value(f, card[f])))
        for f in sorted(card, key=_field_order)
        if card[f] is not None
    ]


@router.get("/customers/{customer_id:segment}/merge")
def merge_page(request: Request, customer_id: Id) -> Response:
    """The preview of merging `absorb` into this customer: both by name, the card
    the merge leads to, the fields they differ in with a choice of whose value
    stays, what moves, and the form that merges."""
    v = visit(request)
    refusal = v.reader_refusal()
    if refusal is not None:
        return refusal
    q = request.query_params
    absorb = q.get("absorb", "")
    if not _ID.fullmatch(absorb):
        return v.problem(
            "Nothing to merge",
            "Choose the customer to merge in from this card's possible duplicates.",
            400,
        )
    keep = _keep(q.multi_items())
    outcome: MergeOutcome | None = None
    refused: Notice | None = None
    status = 200
    try:
        v.state.ensure_ready()
        with v.state.pool.connection() as conn:
            require_customer(conn, customer_id)
            names = {c: customer_name(conn, c) for c in (customer_id, absorb)}
            try:
                outcome = preview_merge(
                    conn, MergeRequest(customer_id, (absorb,), "", keep=keep, dry_run=True)
                )
            except ServiceError as exc:
                if exc.category == Category.UNAVAILABLE:
                    raise
                if exc.category == Category.USAGE and keep:
                    # A stale choice (the cards changed since): the preview without it.
                    keep = {}
                    outcome = preview_merge(
                        conn, MergeRequest(customer_id, (absorb,), "", dry_run=True)
                    )
                else:
                    status = STATUS[exc.category]
                    refused = _refusal(exc, names, customer_id, absorb)
    except ServiceError as exc:
        if exc.code == "customer_missing":
            return v.html(render_not_found(customer_id=customer_id, viewer=v.viewer()), 404)
        return v.problem("Cannot show this page", exc.message, STATUS[exc.category])
    name = _shown(names, customer_id)
    other = _shown(names, absorb)
    window = undo_window_or_none()
    notice = v.take_flash() or refused
    context: dict[str, Any] = {
        "viewer": v.viewer(),
        "priority": name,
        "priority_id": customer_id,
        "absorbed": other,
        "absorbed_id": absorb,
        "card_url": customer_path(customer_id),
        "action": f"{customer_path(customer_id)}/merge",
        "other_way": _preview_url(absorb, customer_id, {}, False),
        "notice": notice,
        "outcome": outcome,
        "window": None if window is None else window_text(window),
        "confirmed": q.get("confirm") == "yes",
        "reason_chars": REASON_CHARS,
    }
    if outcome is not None:
        context.update(
            card=_card_rows(outcome.card),
            moved=moved_text(outcome.moved),
            moved_any=any(outcome.moved.values()),
            conflicts=[
                {
                    "field": c.field,
                    "values": [
                        (owner, _shown(names, owner), plain_text(summary_value(c.field, value)))
                        for owner, value in c.values.items()
                    ],
                    "chosen": keep.get(c.field, customer_id),
                }
                for c in sorted(outcome.conflicts, key=lambda c: _field_order(c.field))
            ],
        )
    response = v.html(render_view("merge.html", **context), status)
    v.clear_flash(response)
    return response


def _shown(names: Mapping[str, str | None], customer_id: str) -> str:
    name = names.get(customer_id)
    return plain_text(name) if name else plain_text(customer_id)


def undo_window_or_none() -> timedelta | None:
    """The undo window; None when unlimited or not a duration (the undo says so)."""
    try:
        return undo_window()
    except ServiceError:
        return None  # a bad setting: said by the undo itself


def _refusal(
    exc: ServiceError,
    names: Mapping[str, str | None],
    priority: str,
    absorb: str,
    undo: bool = False,
) -> Notice:
    return merge_refusal(
        exc, name=_shown(names, absorb), priority=_shown(names, priority), undo=undo
    )


@router.post("/customers/{customer_id:segment}/merge")
async def merge_form(request: Request, customer_id: Id) -> Response:
    """The preview's form, posted: "Merge", or "Update preview" (back to the
    preview with the choices made)."""
    form = await read_form(request)
    return await run_in_thread(_merge, request, customer_id, form)


def _merge(request: Request, customer_id: str, form: Mapping[str, str]) -> Response:
    v = visit(request)
    refused = v.form_refusal(form)
    if refused is not None:
        return refused
    absorb = form.get("absorb", "")
    if not _ID.fullmatch(absorb):
        return v.redirect_with(
            customer_path(customer_id), Notice("Choose a customer to merge in.", "error")
        )
    keep = _keep(list(form.items()))
    confirm = form.get("confirm") == "yes"
    back = _preview_url(customer_id, absorb, keep, confirm)
    if form.get("action") == "preview":
        response = RedirectResponse(back, status_code=303)
        v.set_session(response, v.who.session)
        return response
    user = v.who.merging_user
    if user is None:
        return v.redirect_with(back, NOT_MERGING)
    reason = plain_text(form.get("reason", "")).strip()[:REASON_CHARS]
    names: dict[str, str | None] = {}
    try:
        v.state.ensure_ready()
        with v.state.pool.connection() as conn:
            names = {c: customer_name(conn, c) for c in (customer_id, absorb)}
            if not reason:
                return v.redirect_with(back, Notice("Say why these customers are merged.", "error"))
            merge_customers(
                v.state.services.app(),
                conn,
                v.state.services.policy(),
                MergeRequest(
                    customer_id,
                    (absorb,),
                    user,
                    reason,
                    keep=keep,
                    confirm=confirm,
                    source=PAGE_SOURCE,
                ),
            )
    except ServiceError as exc:
        return v.redirect_with(back, _refusal(exc, names, customer_id, absorb))
    return v.redirect_with(
        customer_path(customer_id), Notice(f"Merged {_shown(names, absorb)} into this card.")
    )


@router.post("/customers/{customer_id:segment}/unmerge")
async def unmerge_form(request: Request, customer_id: Id) -> Response:
    """An "Undo merge" form of the card, posted."""
    form = await read_form(request)
    return await run_in_thread(_unmerge, request, customer_id, form)


def _unmerge(request: Request, customer_id: str, form: Mapping[str, str]) -> Response:
    v = visit(request)
    refused = v.form_refusal(form)
    if refused is not None:
        return refused
    back = customer_path(customer_id)
    user = v.who.merging_user
    if user is None:
        return v.redirect_with(back, NOT_MERGING)
    released = form.get("customer_id", "")
    if not _ID.fullmatch(released):
        return v.redirect_with(back, Notice("Choose a merge to undo.", "error"))
    reason = plain_text(form.get("reason", "")).strip()[:UNDO_REASON_CHARS]
    names: dict[str, str | None] = {}
    try:
        v.state.ensure_ready()
        with v.state.pool.connection() as conn:
            names = {c: customer_name(conn, c) for c in (customer_id, released)}
            if not reason:
                return v.redirect_with(back, Notice("Say why the merge is undone.", "error"))
            unmerge_customers(
                v.state.services.app(),
                conn,
                v.state.services.policy(),
                UnmergeRequest(customer_id, released, user, reason, source=PAGE_SOURCE),
            )
    except ServiceError as exc:
        return v.redirect_with(back, _refusal(exc, names, customer_id, released, undo=True))
    name = _shown(names, released)
    return v.redirect_with(
        back,
        Notice(
            f"Undid the merge: {name} has their own card again.",
            href=customer_path(released),
            link_text=f"Open {name}'s card",
        ),
    )
