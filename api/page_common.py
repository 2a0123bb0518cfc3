"""What the card page's routes share: who is visiting (`Who`, by the session
cookie of `page_session`), a request to the page (`Visit`: its answers, the
session cookie they carry, the checks of readers and of forms), and the
parsing of form bodies and sign-in targets."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.access import AccessKey
from api.caller import Caller, acting_user, marking_user
from api.page_session import (
    FLASH_COOKIE,
    FLASH_MAX_AGE,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    Session,
    SessionSigner,
)
from api.page_view import Notice, Viewer, render_problem
from api.problems import RETRY_AFTER_SECONDS, Refused
from api.state import OPEN_MODE_USER, STORE_KEY, TENANT_KEY, AppState, app_state, server_state
from api.tenancy import choose_for_request, choose_tenant
from services.errors import ServiceError

# The page's own resources only; no inline script or style is ever needed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Who:
    """The person behind a request, as far as the page is concerned."""

    session: Session
    key: AccessKey | None  # None in open mode
    open_mode: bool
    https: bool = False  # the cookie is then Secure too
    open_user: str = OPEN_MODE_USER  # who acts in open mode (`ledger serve --user`)

    @property
    def acting_user(self) -> str | None:
        """Whom task actions are recorded for, by the HTTP API's own rule
        (`tasks`: the key's user; `act-as`: the user named at sign-in); None
        when this visitor cannot act."""
        requested = self.open_user if self.open_mode else self.session.acting_user
        try:
            return acting_user(Caller(self.key), requested)
        except (Refused, ServiceError):
            return None

    @property
    def merging_user(self) -> str | None:
        """Whom merges, their undoing and "not a duplicate" marks are recorded
        for, by the HTTP API's own rule for them (scope `merge`; the key's user,
        or with `act-as` the user named at sign-in); None when this visitor
        cannot merge. A key for task actions alone does not merge customers."""
        caller = Caller(self.key)
        if not caller.allows("merge"):
            return None
        requested = self.open_user if self.open_mode else self.session.acting_user
        try:
            return marking_user(caller, requested)
        except (Refused, ServiceError):
            return None

    @property
    def label(self) -> str | None:
        """The key's name and the user it acts as, for the page's header."""
        if self.key is None:
            return None
        user = self.acting_user
        return f"{self.key.name} ({user})" if user else self.key.name


@dataclass(frozen=True)
class Visit:
    """One request to the page: who makes it, the application's state, and
    the answers to it, each carrying the visitor's session cookie."""

    request: Request
    who: Who
    server: AppState  # the server's state (`api.state.server_state`)

    @property
    def sessions(self) -> SessionSigner:
        """The signer of session cookies and CSRF tokens."""
        return self.server.sessions

    @cached_property
    def state(self) -> AppState:
        """The state whose store the page reads and writes: the server's single
        store, or the store of the tenant of the key the visitor signed in with
        (refused, never another's, when it may have none: `api.tenancy`)."""
        scope_state = self.request.scope.setdefault("state", {})
        if STORE_KEY not in scope_state and TENANT_KEY not in scope_state:
            key = None if self.who.open_mode else self.who.key
            refused = page_tenant_refusal(self.server, key)
            if refused is not None:  # `reader_refusal` answered it with a page already
                raise Refused(*refused)
            choose_for_request(scope_state, self.server, key, None)
        return app_state(self.request)

    def tenant_refusal(self) -> Response | None:
        """None when the visitor's key may read this server's store (or the
        store of its tenant); else the page that says why not."""
        refused = page_tenant_refusal(self.server, None if self.who.open_mode else self.who.key)
        if refused is None:
            return None
        status, detail = refused
        return self.problem("Not allowed" if status == 403 else "No tenant", detail, status)

    def viewer(self) -> Viewer:
        """Who looks at the page, as the templates show them."""
        return Viewer(
            label=self.who.label,
            can_act=self.who.acting_user is not None,
            can_merge=self.who.merging_user is not None,
            signed_in=self.who.key is not None,
            csrf=self.sessions.csrf(self.who.session),
        )

    def html(self, body: str, status: int = 200) -> HTMLResponse:
        """An HTML answer with the page's security headers and the session cookie."""
        headers = SECURITY_HEADERS
        if status == 503:
            headers = {**headers, "Retry-After": str(RETRY_AFTER_SECONDS)}
        response = HTMLResponse(body, status_code=status, headers=headers)
        self.set_session(response, self.who.session)
        return response

    def set_session(self, response: Response, session: Session) -> None:
        """Give `response` the cookie of `session`."""
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.dump(session),
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=self.who.https,
            path="/",
        )

    def redirect_with(self, target: str, notice: Notice) -> Response:
        """Post/redirect/get: 303 to `target` (a path on this server), leaving
        `notice` for it in a signed, short-lived cookie; a reload of the page
        it lands on neither posts again nor shows the notice twice."""
        response = RedirectResponse(target, status_code=303)
        self.set_session(response, self.who.session)
        response.set_cookie(
            FLASH_COOKIE,
            self.sessions.flash(
                self.who.session,
                notice.text,
                notice.kind,
                None if notice.href is None else (notice.href, notice.link_text or notice.href),
            ),
            max_age=FLASH_MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=self.who.https,
            path="/",
        )
        return response

    def take_flash(self) -> Notice | None:
        """The notice the last form's answer left for this page, if any (the
        caller clears it with `clear_flash` on its answer)."""
        found = self.sessions.load_flash(self.who.session, self.request.cookies.get(FLASH_COOKIE))
        if found is None:
            return None
        text, kind, link = found
        return Notice(text, kind, *(link or (None, None)))

    def clear_flash(self, response: Response) -> None:
        """Remove the flash cookie, when the request had one, once it was shown."""
        if FLASH_COOKIE in self.request.cookies:
            response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")

    def problem(self, title: str, detail: str, status: int) -> HTMLResponse:
        """A page that says what went wrong."""
        return self.html(render_problem(title=title, detail=detail, viewer=self.viewer()), status)

    def csrf_ok(self, token: str | None) -> bool:
        """Whether a form's CSRF token is this session's."""
        return self.sessions.csrf_ok(self.who.session, token)

    def reader_refusal(self) -> Response | None:
        """None when the visitor may read cards; else the answer: to sign in
        (no key yet), or 403 (a key without the read scope)."""
        w = self.who
        if w.open_mode:
            return self.tenant_refusal()
        if w.key is None:
            url = self.request.url
            target = url.path + (f"?{url.query}" if url.query else "")
            return RedirectResponse("/signin?" + urlencode({"next": target}), status_code=303)
        if not w.key.allows("read"):
            detail = f"The access key {w.key.name} has no read scope."
            return self.problem("Not allowed", detail, 403)
        return self.tenant_refusal()

    def foreign_post(self) -> Response | None:
        """The 403 for a form posted from another origin, else None. SameSite=Strict
        and the CSRF token already stop a browser's cross-site post; this holds
        should either ever fail (an old browser, a leaked token)."""
        if same_origin(self.request):
            return None
        return self.problem(
            "Form refused", "This form was posted from another site than this one.", 403
        )

    def form_refusal(self, form: Mapping[str, str]) -> Response | None:
        """None when a card form may be acted on: posted from this site, by a
        visitor who may read cards, with this session's CSRF token; else the
        answer that refuses it."""
        refused = self.foreign_post() or self.reader_refusal()
        if refused is not None:
            return refused
        if not self.csrf_ok(form.get("csrf")):
            return self.problem(
                "Form refused",
                "This form did not come from this page or has expired: "
                "reload the page and try again.",
                403,
            )
        return None


# The card page of a server of many tenants shows one tenant's store: the one
# of the key signed in with. An operator key (or open mode) names no tenant.
PAGE_NEEDS_TENANT = (
    "This server serves many tenants: the card page needs a sign-in with an access "
    "key of one tenant (ledger access new-key --tenant ID)."
)


def page_tenant_refusal(server: AppState, key: AccessKey | None) -> tuple[int, str] | None:
    """Why `key` (None: open mode) may not use the card page of `server`, as a
    status and a sentence, or None when it may."""
    if server.tenants is not None and (key is None or key.tenant is None):
        return 400, PAGE_NEEDS_TENANT
    try:
        choose_tenant(server, key, None, open_mode=key is None)
    except Refused as exc:
        return exc.status, exc.detail
    except ServiceError as exc:
        return 404, exc.message
    return None


def visit(request: Request) -> Visit:
    """The visit `request` makes: its session (a new one without a valid
    cookie) and the access key it signed in with."""
    state = server_state(request)
    access = state.access
    sessions = state.sessions
    session = sessions.load(request.cookies.get(SESSION_COOKIE)) or sessions.new()
    key = None
    if access is not None and session.key_name is not None:
        # Looked up again on every request: a key removed from the file (or
        # given a new token under the same name) is out; new scopes apply.
        key = next(
            (
                k
                for k in access.keys
                if k.name == session.key_name and k.fingerprint == session.key_fingerprint
            ),
            None,
        )
    who = Who(session, key, access is None, request.url.scheme == "https", state.page_user)
    return Visit(request, who, state)


def local_target(target: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site;
    the customer search unless the form names one."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/customers"
    return target


_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN = re.compile(r"https?://[^/?#@\s]+")


def same_origin(request: Request) -> bool:
    """Whether a request's `Origin`, when it has one, is this server as the
    browser addressed it (the `Host` header). The scheme is held to https only
    when the request came over https: behind a proxy that ends TLS, this
    server sees http while the browser's origin is https."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # SameSite=Strict and the CSRF token hold on their own
    host = request.headers.get("host")
    # "null" (a sandboxed frame, a file) or anything else is not this server.
    if not host or not _ORIGIN.fullmatch(origin):
        return False
    try:
        theirs = urlsplit(origin)
        ours = urlsplit(f"//{host}")
        if request.url.scheme == "https" and theirs.scheme != "https":
            return False
        default = _DEFAULT_PORTS[theirs.scheme]
        return (theirs.hostname, theirs.port or default) == (ours.hostname, ours.port or default)
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        return False


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the page's forms post nothing else), first
    value of each field. Parsed here rather than with python-multipart, which
    the page would need for nothing else."""
    body = await request.body()
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items() if values}


async def run_in_thread(func: Callable[..., Response], *args: Any) -> Response:
    """`func(*args)` on the thread pool (it reads the database), awaited."""
    result: Response = await run_in_threadpool(func, *args)
    return result
