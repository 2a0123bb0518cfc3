"""The card page's customer search: `GET /customers?q=...` lists the customers
found, each linking to its card (an exact customer id alone opens the card at
once), and `/` leads there."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.page_common import visit
from api.page_view import customer_path, render_customers
from api.problems import STATUS
from services.customers import find_customers
from services.errors import ServiceError

router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> Response:
    """The customer search."""
    return RedirectResponse("/customers", status_code=303)


@router.get("/customers", response_class=HTMLResponse)
def customers_page(request: Request) -> Response:
    """The search form; with `q`, the customers it finds (the card itself when
    the query is exactly one customer's id and finds no one else), or a sentence
    saying none was found."""
    v = visit(request)
    refusal = v.reader_refusal()
    if refusal is not None:
        return refusal
    query = request.query_params.get("q", "")
    cursor = request.query_params.get("cursor") or None
    if not query.strip():
        return v.html(render_customers(query="", answer=None, next_url=None, viewer=v.viewer()))
    try:
        v.state.ensure_ready()
        with v.state.pool.connection() as conn:
            found = find_customers(conn, query, cursor=cursor)
    except ServiceError as exc:
        return v.problem("Cannot search now", exc.message, STATUS[exc.category])
    items = found.items
    if cursor is None and len(items) == 1 and items[0].matched == "id":
        return RedirectResponse(customer_path(items[0].customer_id), status_code=303)
    next_url = None
    if found.next_cursor is not None:
        next_url = "/customers?" + urlencode({"q": query, "cursor": found.next_cursor})
    return v.html(
        render_customers(query=query, answer=found.as_json(), next_url=next_url, viewer=v.viewer())
    )
