"""The customer card: `GET /customers/{customer_id}` (the header and one tab,
in the viewer's time zone) and the page's own files (`/static/*`).

Tabs are read with `tab_request` and `tab_answer`, the very functions behind
`GET /v1/customers/{id}/tabs/{tab}`; the header comes from `card_header`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from api.models import Id
from api.page_common import Visit, visit
from api.page_merging import absorbed_redirect, merged_here, undo_window_or_none
from api.page_time import Clock, UnknownZone, zone
from api.page_view import (
    TAB_LABELS,
    CardPage,
    Notice,
    View,
    kinds_from,
    plain_text,
    render_card,
    render_not_found,
    task_of,
)
from api.problems import STATUS
from services.duplicates import duplicate_count
from services.errors import ServiceError
from services.merging import MergedCustomer, merged_customers
from services.tabs import CardHeader, card_header, tab_answer, tab_request
from services.tasks import Person, task_assignees

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"card.css": "text/css", "card.js": "text/javascript", "icon.svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)


@router.get("/customers/{customer_id:segment}", response_class=HTMLResponse)
def card_page(request: Request, customer_id: Id) -> Response:
    """One customer's card: `tab`, `tz`, `kind` (timeline), `cursor`, and
    `edit` (a task's edit form) from the query."""
    v = visit(request)
    refusal = v.reader_refusal()
    if refusal is not None:
        return refusal
    moved = absorbed_redirect(v, customer_id)
    if moved is not None:
        return moved
    q = request.query_params
    notice = None
    try:
        zone_name, tz = zone(q.get("tz"))
    except UnknownZone as exc:
        zone_name, tz = zone(None)
        notice = Notice(f"{exc}; times are shown in UTC", "error")
    tab = q.get("tab", "timeline")
    if tab not in TAB_LABELS:
        return v.problem("No such tab", f"unknown tab {plain_text(tab)!r}", 404)
    try:
        kinds = kinds_from(q.getlist("kind")) if tab == "timeline" else ()
    except ValueError as exc:
        return v.problem("Bad request", str(exc), 400)
    cursor = q.get("cursor") or None
    try:
        tab_request(customer_id, tab, kinds=kinds, cursor=cursor)  # the cursor checked
    except ServiceError as exc:
        return v.problem("Bad request", exc.message, 400)
    # What the last form did (post/redirect/get), shown once.
    notice = v.take_flash() or notice
    view = View(customer_id, tab, zone_name, kinds, cursor)
    response = render_page(v, view, Clock(zone_name, tz), notice, edit=q.get("edit"))
    v.clear_flash(response)
    return response


def render_page(
    v: Visit,
    view: View,
    clock: Clock,
    notice: Notice | None,
    *,
    edit: str | None = None,
    status: int = 200,
) -> Response:
    """The card as `view` asks for it, with `notice` and, when `edit` names a
    task the visitor may edit, its edit form; 404 for a customer without events."""
    viewer = v.viewer()
    try:
        header, tab, people, duplicates, merged = _read_card(v, view)
        window = undo_window_or_none() if merged else None
    except ServiceError as exc:
        if exc.code == "customer_missing":
            return v.html(render_not_found(customer_id=view.customer_id, viewer=viewer), 404)
        return v.problem("Cannot show this customer", exc.message, STATUS[exc.category])
    editing = None
    if edit is not None and view.tab == "tasks":
        task = task_of(tab, edit)
        if task is not None and viewer.can_act and "edit" in task.get("actions", ()):
            editing = task
        elif notice is None:
            notice = Notice("This task cannot be edited by you in its current state", "error")
    page = CardPage(
        view=view,
        viewer=viewer,
        clock=clock,
        name=plain_text(header.name) if header.name else None,
        last_email=header.last_email.model_dump() if header.last_email else None,
        counts=header.counts,
        count_cap=header.count_cap,
        answer=tab,
        notice=notice,
        editing=editing,
        phone=plain_text(header.phone) if header.phone else None,
        email=plain_text(header.email) if header.email else None,
        segments=[plain_text(s) for s in header.segments],
        since=header.since,
        extra={
            "people": people,
            "duplicates": duplicates,
            "merged": merged_here(merged, clock, window),
        },
    )
    return v.html(render_card(page), status)


def _read_card(
    v: Visit, view: View
) -> tuple[CardHeader, dict[str, Any], list[Person], int, list[MergedCustomer]]:
    """The card's header, the tab `view` shows (as JSON values), the people
    a new task can be assigned to (none for a visitor who cannot act), how
    many possible duplicates the customer has and the customers merged into
    it; NOT_FOUND for an unknown customer."""
    state = v.state
    state.ensure_ready()
    with state.pool.connection() as conn:
        header = card_header(conn, view.customer_id)
        request = tab_request(
            view.customer_id,
            view.tab,
            kinds=view.kinds,
            cursor=view.cursor,
            viewer=v.who.acting_user if view.tab == "tasks" else None,
            policy=state.services.policy(),
            people=state.services.people(),
        )
        user = v.who.acting_user
        people = (
            []
            if user is None
            else task_assignees(conn, view.customer_id, user, state.services.people())
        )
        answer = tab_answer(conn, request).model_dump(mode="json")
        duplicates = duplicate_count(conn, view.customer_id)
        return header, answer, people, duplicates, merged_customers(conn, view.customer_id)


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The page's stylesheet, script and icon."""
    media = STATIC_FILES.get(name)
    if media is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    return FileResponse(
        STATIC / name,
        media_type=media,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
