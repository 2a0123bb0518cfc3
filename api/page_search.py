"""The card page's customer search: `GET /customers?q=...` goes straight to
the card of the one customer found, and `/` leads there."""

from __future__ import annotations

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
    """The search form; with `q`, the card of the one customer it finds, or
    the form again saying none was found."""
    v = visit(request)
    refusal = v.reader_refusal()
    if refusal is not None:
        return refusal
    query = request.query_params.get("q", "")
    if not query.strip():
        return v.html(render_customers(query="", not_found=False, viewer=v.viewer()))
    try:
        v.state.ensure_ready()
        with v.state.pool.connection() as conn:
            matches = find_customers(conn, query)
    except ServiceError as exc:
        return v.problem("Cannot search now", exc.message, STATUS[exc.category])
    if len(matches) == 1:
        return RedirectResponse(customer_path(matches[0].customer_id), status_code=303)
    return v.html(render_customers(query=query, not_found=True, viewer=v.viewer()))
