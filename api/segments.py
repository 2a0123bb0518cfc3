"""Path segments that may hold any id, `/` and `%` included.

The server decodes the request path before routing, so a customer id `a/b`
sent as `/customers/a%2Fb` would arrive as `/customers/a/b` and match no route
(or the wrong one). `RawSegments` rebuilds the path from the undecoded
`raw_path`, keeping `/` and `%` inside a segment escaped (`%2F`, `%25`), and
the `{name:segment}` convertor decodes them again for the handler. Every
other character stays as the server decoded it, so routes without an id, the
request URL and the log line are unchanged for ordinary paths.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send


class SegmentConvertor(Convertor[str]):
    """One path segment, as `RawSegments` escaped it, decoded for the handler."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("segment", SegmentConvertor())


def escaped_path(raw_path: bytes) -> str | None:
    """The decoded path with `%` and `/` inside each segment escaped again, or
    None when the raw path is not plain ASCII (the server's own decoding then
    stands)."""
    try:
        text = raw_path.decode("ascii")
    except UnicodeDecodeError:
        return None
    return "/".join(
        unquote(part).replace("%", "%25").replace("/", "%2F") for part in text.split("/")
    )


class RawSegments:
    """ASGI middleware: routes on segments of the raw path (module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:
            # raw_path may carry the query string on some servers; the path is
            # what precedes it.
            path = escaped_path(bytes(raw).split(b"?", 1)[0])
            # Only when the server decoded these very bytes into its path (no
            # root_path prefix, no rewriting of its own); in place, so outer
            # middleware sees the matched route.
            if path is not None and unquote(path) == scope["path"]:
                scope["path"] = path
        await self.app(scope, receive, send)


__all__ = ["RawSegments", "SegmentConvertor", "escaped_path"]
