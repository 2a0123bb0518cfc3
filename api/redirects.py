"""A merged-away customer's views answer 308 Permanent Redirect to the same view
of the customer it is merged into (docs/http.md, docs/merging.md): the same
route, the priority customer's id in place of the absorbed one, the query
string kept. Only the GETs that show a card's content redirect; POSTs under an
absorbed id are accepted and keep that id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from api.state import app_state
from ledger.db import Connection
from services.merging import resolve

MOVED = 308

# The 308 as the OpenAPI document lists it (no body; `api.openapi` drops the
# media type FastAPI would give it).
MOVED_RESPONSE: dict[int | str, dict[str, Any]] = {
    MOVED: {
        "description": "Permanent Redirect: the customer is merged into another; "
        "`Location` is this URL with that customer's id (query string kept).",
        "headers": {
            "Location": {
                "description": "The same view of the customer the path's customer is "
                "merged into: a path on this server, with the query string.",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    }
}

# Said in each redirecting operation's description.
MOVED_NOTE = (
    " A customer merged into another answers 308 Permanent Redirect, `Location` "
    "this URL with that customer's id and the same query string; events sent under "
    "the absorbed id show there."
)


def merged_redirect(request: Request, conn: Connection, customer_id: str) -> Response | None:
    """The 308 to the priority customer's view when `customer_id` is merged into
    one, else None (the handler answers as usual)."""
    into = resolve(conn, customer_id)
    if into is None:
        return None
    route: APIRoute = request.scope["route"]  # the JSON API's routes are APIRoutes
    # The route's own convertors escape the ids (`/` and `%` inside an id stay
    # escaped: api.segments).
    params = {**request.path_params, "customer_id": into}
    path = request.scope.get("root_path", "") + route.url_path_for(route.name, **params)
    query = request.url.query
    location = f"{path}?{query}" if query else path
    return Response(status_code=MOVED, headers={"Location": location})


def customer_view(
    request: Request, customer_id: str, read: Callable[[Connection], str]
) -> Response:
    """A GET of one of `customer_id`'s views: the 308 to the priority customer's
    view when it is merged into one, else `read`'s JSON text, read on one of the
    store's connections."""
    state = app_state(request)
    state.ensure_ready()
    with state.pool.connection() as conn:
        moved = merged_redirect(request, conn, customer_id)
        if moved is not None:
            return moved
        body = read(conn)
    return Response(body, media_type="application/json")
