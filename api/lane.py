"""The lean path of `POST /v1/events`: its endpoint (`api.routes.events.append_events`)
called straight from the application's entry (`EventsLane`), without FastAPI's
middleware stack, routing and dependency resolution.

Many clients each appending one event at a time is the API's busiest traffic,
and FastAPI's path cost such a request more server CPU than the event's append
(issue 22). Nothing else changes for it: the caller is authenticated and needs
the `ingest` scope as the route's dependency requires (`api.caller`); the
endpoint reads, limits and appends the body as it does behind the route; its
errors become the same problems (`api.problems`); the request id, the log line
and the metrics come from the same `RequestIdMiddleware`, counted under the
route's path; the OpenAPI document still describes the route.

Taken are the requests FastAPI would route there with nothing more to do:
POST to exactly `/v1/events`, no query string (the endpoint's only parameter,
`skip_invalid`, is then its default), no root path, and, with CORS on, no
`Origin` header (the CORS middleware answers those). Every other request goes
through FastAPI as before.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.caller import authenticate
from api.problems import Refused, refused_problem, service_problem
from api.routes.events import append_events
from services.errors import ServiceError

PATH = "/v1/events"
RAW_PATH = PATH.encode()


class EventsLane:
    """ASGI: one append request answered by the endpoint directly (module doc).
    Wrapped in `RequestIdMiddleware`; `app` is the application the endpoint
    finds its state in, `route` the route the request counts under."""

    def __init__(self, app: ASGIApp, route: APIRoute, *, cors: bool) -> None:
        self._app = app
        self._route = route
        self._cors = cors

    def takes(self, scope: Scope) -> bool:
        """A request this lane answers as the route would (module doc)."""
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == PATH
            and not scope.get("query_string")
            # RawSegments would leave such a path as it is.
            and scope.get("raw_path", RAW_PATH) == RAW_PATH
            and not scope.get("root_path")
            and not (self._cors and _has_origin(scope))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # What routing sets: the application (the endpoint's state) and the
        # route (the metrics' label).
        scope["app"] = self._app
        scope["route"] = self._route
        request = Request(scope, receive)
        response: Response
        try:
            caller = authenticate(request)
            caller.require("ingest")
            response = await append_events(request, caller)
        except Refused as exc:
            response = refused_problem(exc, request.state.request_id)
        except ServiceError as exc:
            response = service_problem(exc, request.state.request_id)
        await response(scope, receive, send)


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])
