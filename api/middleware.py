"""Request ids, the log line and the HTTP metrics of every request
(`RequestIdMiddleware`), and the last answer to a failure no handler took."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import STATUS, problem
from api.state import RELEASE_KEY
from ledger.printable import printable
from services.errors import classify

log = logging.getLogger("ledger.api")


class RequestIdMiddleware:
    """Gives every request an id (the caller's `X-Request-Id` when sane), echoes
    it, logs one line per request (never headers: they carry tokens) and
    counts the request by route and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # What no handler answered: a known failure from below (say, the
            # database went away) gets its problem, anything else a 500 without
            # details; answered here, inside, so it carries the request id.
            if answered:
                raise
            known = classify(exc)
            if known is None:
                log.error("%s failed: %s", request_id, type(exc).__name__, exc_info=exc)
                response = problem(
                    500, "internal error; the server log has the details", request_id=request_id
                )
            else:
                response = problem(STATUS[known.category], known.message, request_id=request_id)
            await response(scope, receive, send_with_id)
        finally:
            # The tenant's state the request leased (`api.tenancy`), given back.
            release = scope["state"].pop(RELEASE_KEY, None)
            if release is not None:
                release(status)
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path_format", None) or "unmatched"
            method = scope["method"]
            requests, seconds = _meters(method, route, status)
            requests.inc()
            seconds.observe(elapsed)
            key = scope["state"].get("key_name", "-")
            log.info(
                "%s %s %s %d %.1fms key=%s",
                request_id,
                method,
                loggable(scope["path"]),
                status,
                elapsed * 1000,
                key,
            )


# The metrics' children by (method, route, status), found once: looking a child
# up by its labels took a tenth of the time a one-event append spent here.
_METERS: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _meters(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The request counter and the duration histogram of these labels."""
    key = (method, route, status)
    meters = _METERS.get(key)
    if meters is None:
        from services.metrics import HTTP_REQUESTS, HTTP_SECONDS

        meters = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_SECONDS.labels(method, route),
        )
        _METERS[key] = meters
    return meters


def request_id_of(scope: Scope) -> str:
    """The caller's `X-Request-Id` when it is 1 to 128 visible ASCII
    characters, else a new random id."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = bytes(value).decode("latin-1")
            if 0 < len(text) <= 128 and all(33 <= ord(c) < 127 for c in text):
                return text
    return _new_ids.next()


class RequestIds:
    """New request ids: 32 hex digits, unique and not guessable, made without a
    system call. `uuid.uuid4` reads `os.urandom` for each, and that call gives up
    the interpreter lock on the server's event loop: with the group writer busy,
    every request then waited for the lock to come back (issue 22, a tenth of a
    one-event append's server time). Here, a keyed BLAKE2b of a counter, its key
    drawn once per process."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._count = itertools.count()

    def next(self) -> str:
        number = next(self._count).to_bytes(8, "little")
        return hashlib.blake2b(number, key=self._key, digest_size=16).hexdigest()


_new_ids = RequestIds()


def _draw_new_ids() -> None:
    """A forked child counts from 0 too: a key of its own keeps its ids apart."""
    global _new_ids
    _new_ids = RequestIds()


os.register_at_fork(after_in_child=_draw_new_ids)


def loggable(path: str, limit: int = 200) -> str:
    """A path for the log: control characters escaped, long ids cut."""
    return printable(path[:limit]) + ("..." if len(path) > limit else "")
