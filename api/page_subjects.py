"""The views of one thing on the card: an order's change history (`GET
/customers/{id}/orders/{order_id}`, the Orders tab's rows lead here) and a
dialogue with its messages (`GET /customers/{id}/chats/{dialog_id}`, the Chats
tab's start dates lead here). Read with `order_history` and `dialogue`, the very
functions behind the JSON endpoints; the header's name from `card_header`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.models import Id
from api.page_common import Visit, visit
from api.page_merging import absorbed_redirect
from api.page_time import Clock, UnknownZone, zone
from api.page_view import customer_path, plain_text, render_not_found, render_view
from api.problems import STATUS
from ledger.db import Connection
from ledger.people import Directory
from ledger.personal import ERASED
from services.errors import Category, ServiceError
from services.subjects import dialogue, order_history
from services.tabs import card_header

router = APIRouter(include_in_schema=False)


def _show(
    request: Request,
    customer_id: str,
    kind: str,
    subject_id: str,
    read: Callable[[Connection, str | None, Directory], Any],
) -> Response:
    """Read one subject's page of `read` (given the cursor and the people
    directory) and render `kind`'s template."""
    v = visit(request)
    refusal = v.reader_refusal()
    if refusal is not None:
        return refusal
    rest = f"/{'orders' if kind == 'order' else 'chats'}/{quote(subject_id, safe='')}"
    moved = absorbed_redirect(v, customer_id, rest, tell=False)
    if moved is not None:
        return moved
    q = request.query_params
    try:
        zone_name, tz = zone(q.get("tz"))
    except UnknownZone as exc:
        return v.problem("Bad request", str(exc), 400)
    cursor = q.get("cursor") or None
    try:
        v.state.ensure_ready()
        with v.state.pool.connection() as conn:
            header = card_header(conn, customer_id)
            if header.counts["timeline"] == 0:
                return v.html(render_not_found(customer_id=customer_id, viewer=v.viewer()), 404)
            answer = read(conn, cursor, v.state.services.people()).model_dump(mode="json")
    except ServiceError as exc:
        title = "Cannot show this page"
        if exc.category == Category.NOT_FOUND:
            title = f"No such {'order' if kind == 'order' else 'dialogue'}"
        return v.problem(title, exc.message, STATUS[exc.category])
    clock = Clock(zone_name, tz)
    return v.html(_render(v, kind, subject_id, answer, header.name, zone_name, clock))


def _render(
    v: Visit,
    kind: str,
    subject_id: str,
    answer: dict[str, Any],
    name: str | None,
    zone_name: str,
    clock: Clock,
) -> str:
    card = customer_path(answer["customer_id"])
    here = f"{card}/{'orders' if kind == 'order' else 'chats'}/{quote(subject_id, safe='')}"

    def url(cursor: str | None = None) -> str:
        params = [("tz", zone_name)] if zone_name != "UTC" else []
        if cursor:
            params.append(("cursor", cursor))
        return f"{here}?{urlencode(params)}" if params else here

    back = [("tab", "orders" if kind == "order" else "chats")]
    if zone_name != "UTC":
        back.append(("tz", zone_name))
    return render_view(
        f"{kind}.html",
        viewer=v.viewer(),
        answer=answer,
        customer=plain_text(name) if name else answer["customer_id"],
        card_url=f"{card}?{urlencode(back)}",
        page={"clock": clock},  # what the card's `when` macro reads
        next_url=url(answer["next_cursor"]) if answer["next_cursor"] else None,
        first_url=url() if v.request.query_params.get("cursor") else None,
        erased=ERASED,
    )


@router.get("/customers/{customer_id:segment}/orders/{order_id:segment}")
def order_page(request: Request, customer_id: Id, order_id: Id) -> Response:
    """One order: its number, status, total, created and last change, and its
    changes (field, old -> new, who, when), newest first, paged."""
    return _show(
        request,
        customer_id,
        "order",
        order_id,
        lambda conn, cursor, people: order_history(
            conn, customer_id, order_id, cursor=cursor, people=people
        ),
    )


@router.get("/customers/{customer_id:segment}/chats/{dialog_id:segment}")
def dialogue_page(request: Request, customer_id: Id, dialog_id: Id) -> Response:
    """One dialogue: channel, status, started, message count, the messages in
    order (direction, author, time, text), paged; the messenger's own link as a
    secondary one."""
    return _show(
        request,
        customer_id,
        "dialogue",
        dialog_id,
        lambda conn, cursor, people: dialogue(
            conn, customer_id, dialog_id, cursor=cursor, people=people
        ),
    )
