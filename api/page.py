"""The customer card page: `GET /customers/{customer_id}` and its forms.

This router only translates: query parameters and form fields into the
service layer's requests (`services/`), its answers into `page_view`'s
templates, its errors into a notice on the page. Tabs are read with
`tab_answer` and task buttons call `task_action`, the very functions behind
`GET /v1/customers/{id}/tabs/{tab}` and `POST /v1/.../tasks/{task_id}/{action}`.

Sign-in: with an access file, a browser signs in once with an access key
(`POST /signin`) and gets the session cookie of `page_session`. Without one
(open mode, loopback only) nothing is asked and the page acts as the user
`OPEN_MODE_USER`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.access import AccessKey
from api.app import Caller, Id, _acting_user, _state
from api.app import _Refused as ApiRefused
from api.page_session import SESSION_COOKIE, SESSION_MAX_AGE, Session, SessionSigner
from api.page_view import (
    TAB_LABELS,
    BadFormValue,
    CardPage,
    Clock,
    Notice,
    UnknownZone,
    View,
    Viewer,
    customer_path,
    edit_changes,
    kinds_from,
    plain_text,
    render_card,
    render_customers,
    render_not_found,
    render_problem,
    render_signin,
    task_of,
    zone,
)
from api.problems import RETRY_AFTER_SECONDS, STATUS
from ledger.db import Connection
from ledger.rights import RightsPolicy
from projections.paging import Page
from projections.tabs import TabRequest, check_cursor
from projections.timeline import TimelineQuery
from services.customers import find_customers
from services.errors import Category, ServiceError
from services.tabs import card_header, tab_answer
from services.tasks import FieldChange, TaskActionRequest, task_action

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"card.css": "text/css", "card.js": "text/javascript", "icon.svg": "image/svg+xml"}
OPEN_MODE_USER = "local"  # who acts from the page when the server runs open
PAGE_SOURCE = "ledger-page"  # the `source` of events the page appends

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
ACTION_DONE = {
    "complete": "Task completed",
    "reopen": "Task reopened",
    "delete": "Task deleted",
    "edit": "Task saved",
}


@dataclass(frozen=True)
class Who:
    """The person behind a request, as far as the page is concerned."""

    session: Session
    key: AccessKey | None  # None in open mode
    open_mode: bool
    https: bool = False  # the cookie is then Secure too

    @property
    def acting_user(self) -> str | None:
        """Whom task actions are recorded for, by the HTTP API's own rule
        (`tasks`: the key's user; `act-as`: the user named at sign-in); None
        when this visitor cannot act."""
        requested = OPEN_MODE_USER if self.open_mode else self.session.acting_user
        try:
            return _acting_user(Caller(self.key), requested)
        except (ApiRefused, ServiceError):
            return None

    @property
    def label(self) -> str | None:
        if self.key is None:
            return None
        user = self.acting_user
        return f"{self.key.name} ({user})" if user else self.key.name


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def page_router(sessions: SessionSigner | None = None) -> APIRouter:
    """The card page's routes, over the application's state (`create_app`):
    its services, access file (None: open mode, which `ledger serve` allows on
    loopback only) and connection pool."""
    router = APIRouter(include_in_schema=False)
    sessions = sessions or SessionSigner()

    def who(request: Request) -> Who:
        access = _state(request).access
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
        return Who(session, key, access is None, request.url.scheme == "https")

    def viewer_of(w: Who) -> Viewer:
        return Viewer(
            label=w.label,
            can_act=w.acting_user is not None,
            signed_in=w.key is not None,
            csrf=sessions.csrf(w.session),
        )

    def html(body: str, w: Who | None, status: int = 200) -> HTMLResponse:
        headers = SECURITY_HEADERS
        if status == 503:
            headers = {**headers, "Retry-After": str(RETRY_AFTER_SECONDS)}
        response = HTMLResponse(body, status_code=status, headers=headers)
        if w is not None:
            _set_session(response, w.session, w.https)
        return response

    def _set_session(response: Response, session: Session, secure: bool) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            sessions.dump(session),
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
        )

    def require_reader(request: Request, w: Who) -> None:
        if w.open_mode:
            return
        if w.key is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _Refused(
                RedirectResponse("/signin?" + urlencode({"next": target}), status_code=303)
            )
        if not w.key.allows("read"):
            raise _Refused(
                html(
                    render_problem(
                        title="Not allowed",
                        detail=f"The access key {w.key.name} has no read scope.",
                        viewer=viewer_of(w),
                    ),
                    w,
                    403,
                )
            )

    def problem(w: Who, title: str, detail: str, status: int) -> HTMLResponse:
        return html(render_problem(title=title, detail=detail, viewer=viewer_of(w)), w, status)

    def foreign_post(request: Request, w: Who) -> Response | None:
        """The 403 for a form posted from another origin, else None. SameSite=Strict
        and the CSRF token already stop a browser's cross-site post; this holds
        should either ever fail (an old browser, a leaked token)."""
        if _same_origin(request):
            return None
        return problem(
            w, "Form refused", "This form was posted from another site than this one.", 403
        )

    # -- the customer search ----------------------------------------------------------

    @router.get("/")
    def home() -> Response:
        return RedirectResponse("/customers", status_code=303)

    @router.get("/customers", response_class=HTMLResponse)
    def customers_page(request: Request) -> Response:
        w = who(request)
        try:
            require_reader(request, w)
        except _Refused as refused:
            return refused.response
        query = request.query_params.get("q", "")
        if not query.strip():
            return html(render_customers(query="", not_found=False, viewer=viewer_of(w)), w)
        state = _state(request)
        try:
            state.ensure_ready()
            with state.pool.connection() as conn:
                matches = find_customers(conn, query)
        except ServiceError as exc:
            return problem(w, "Cannot search now", exc.message, STATUS[exc.category])
        if len(matches) == 1:
            return RedirectResponse(customer_path(matches[0].customer_id), status_code=303)
        return html(render_customers(query=query, not_found=True, viewer=viewer_of(w)), w)

    # -- the page ---------------------------------------------------------------------

    @router.get("/customers/{customer_id:segment}", response_class=HTMLResponse)
    def card_page(request: Request, customer_id: Id) -> Response:
        w = who(request)
        try:
            require_reader(request, w)
        except _Refused as refused:
            return refused.response
        q = request.query_params
        notice = None
        try:
            zone_name, tz = zone(q.get("tz"))
        except UnknownZone as exc:
            zone_name, tz = zone(None)
            notice = Notice(f"{exc}; times are shown in UTC", "error")
        tab = q.get("tab", "timeline")
        if tab not in TAB_LABELS:
            return problem(w, "No such tab", f"unknown tab {plain_text(tab)!r}", 404)
        try:
            kinds = kinds_from(q.getlist("kind")) if tab == "timeline" else ()
            cursor = q.get("cursor") or None
            if cursor is not None:
                check_cursor(tab, customer_id, cursor)
        except ValueError as exc:  # BadCursor included
            return problem(w, "Bad request", str(exc), 400)
        done = q.get("done")
        if done in ACTION_DONE and notice is None:
            notice = Notice(ACTION_DONE[done])
        view = View(customer_id, tab, zone_name, kinds, cursor)
        return render_page(request, w, view, Clock(zone_name, tz), notice, edit=q.get("edit"))

    def render_page(
        request: Request,
        w: Who,
        view: View,
        clock: Clock,
        notice: Notice | None,
        *,
        edit: str | None = None,
        status: int = 200,
    ) -> Response:
        viewer = viewer_of(w)
        state = _state(request)
        try:
            state.ensure_ready()
            with state.pool.connection() as conn:
                header = card_header(conn, view.customer_id)
                if header.counts["timeline"] == 0:
                    return html(
                        render_not_found(customer_id=view.customer_id, viewer=viewer), w, 404
                    )
                tab = tab_answer(
                    conn,
                    TabRequest(
                        customer_id=view.customer_id,
                        tab=view.tab,
                        timeline=TimelineQuery(
                            kinds=view.kinds, cursor=view.cursor if view.tab == "timeline" else None
                        ),
                        viewer=w.acting_user if view.tab == "tasks" else None,
                        policy=state.services.policy(),
                        page=Page(cursor=view.cursor if view.tab != "timeline" else None),
                    ),
                ).model_dump(mode="json")
        except ServiceError as exc:
            return problem(w, "Cannot show this customer", exc.message, STATUS[exc.category])
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
        )
        return html(render_card(page), w, status)

    # -- task buttons -----------------------------------------------------------------

    @router.post("/customers/{customer_id:segment}/tasks/{task_id:segment}/{action}")
    async def task_button(
        request: Request, customer_id: Id, task_id: Id, action: str
    ) -> Response:
        form = await _form(request)
        return await _run_in_thread(task_button_sync, request, customer_id, task_id, action, form)

    def task_button_sync(
        request: Request, customer_id: str, task_id: str, action: str, form: Mapping[str, str]
    ) -> Response:
        w = who(request)
        refused_origin = foreign_post(request, w)
        if refused_origin is not None:
            return refused_origin
        try:
            require_reader(request, w)
        except _Refused as refused:
            return refused.response
        if not sessions.csrf_ok(w.session, form.get("csrf")):
            return problem(
                w,
                "Form refused",
                "This form did not come from this page or has expired: reload the page "
                "and try again.",
                403,
            )
        try:
            zone_name, tz = zone(form.get("tz"))
        except UnknownZone:
            zone_name, tz = zone(None)
        clock = Clock(zone_name, tz)
        view = View(customer_id, "tasks", zone_name)
        user = w.acting_user
        if user is None:
            return render_page(
                request,
                w,
                view,
                clock,
                Notice("Refused: this access key may read but not act on tasks", "error"),
                status=403,
            )
        changes: tuple[FieldChange, ...] = ()
        state = _state(request)
        policy = state.services.policy()
        try:
            state.ensure_ready()
            with state.pool.connection() as conn:
                if action == "edit":
                    changes = _edit_changes(conn, customer_id, task_id, user, form, clock, policy)
                    if not changes:
                        return _after_action(view, "edit")
                task_action(
                    state.services.app(),
                    conn,
                    policy,
                    TaskActionRequest(
                        customer_id=customer_id,
                        task_id=task_id,
                        action=action,
                        user_id=user,
                        changes=changes,
                        source=PAGE_SOURCE,
                    ),
                )
        except BadFormValue as exc:
            return render_page(
                request, w, view, clock, Notice(f"Refused: {exc}", "error"), status=422
            )
        except ServiceError as exc:
            if exc.category == Category.UNAVAILABLE:
                return problem(w, "Cannot act now", exc.message, 503)
            # The reason the rules gave, on the page the user was looking at.
            return render_page(
                request,
                w,
                view,
                clock,
                Notice(f"Refused: {exc.message}", "error"),
                status=STATUS[exc.category],
            )
        return _after_action(view, action)

    def _edit_changes(
        conn: Connection,
        customer_id: str,
        task_id: str,
        user: str,
        form: Mapping[str, str],
        clock: Clock,
        policy: RightsPolicy,
    ) -> tuple[FieldChange, ...]:
        tasks = tab_answer(
            conn, TabRequest(customer_id=customer_id, tab="tasks", viewer=user, policy=policy)
        ).model_dump(mode="json")
        task = task_of(tasks, task_id)
        if task is None:
            raise ServiceError(
                Category.NOT_FOUND,
                f"task {task_id!r} does not exist for customer {customer_id!r}",
            )
        return tuple(FieldChange(c["field"], c["new"]) for c in edit_changes(task, form, clock))

    def _after_action(view: View, action: str) -> Response:
        # Post/redirect/get: a reload does not press the button again.
        target = view.url(tab="tasks")
        target += ("&" if "?" in target else "?") + urlencode({"done": action})
        return RedirectResponse(target, status_code=303)

    # -- signing in and out -----------------------------------------------------------

    @router.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request) -> Response:
        w = who(request)
        next_url = _local_target(request.query_params.get("next"))
        if w.open_mode or w.key is not None:
            return RedirectResponse(next_url, status_code=303)
        return html(render_signin(next_url=next_url, csrf=sessions.csrf(w.session)), w)

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        form = await _form(request)
        w = who(request)
        refused_origin = foreign_post(request, w)
        if refused_origin is not None:
            return refused_origin
        next_url = _local_target(form.get("next"))
        access = _state(request).access
        if access is None:
            return RedirectResponse(next_url, status_code=303)
        if not sessions.csrf_ok(w.session, form.get("csrf")):
            return html(
                render_signin(
                    next_url=next_url,
                    csrf=sessions.csrf(w.session),
                    error="The form expired: please sign in again.",
                ),
                w,
                403,
            )
        key = access.verify(form.get("key", "").strip())
        if key is None or not key.allows("read"):
            error = (
                "That access key is not valid."
                if key is None
                else "That access key cannot read customer cards."
            )
            return html(
                render_signin(next_url=next_url, csrf=sessions.csrf(w.session), error=error),
                w,
                401 if key is None else 403,
            )
        acting = form.get("act_as", "").strip() or None
        if acting is not None and not _USER_ID.fullmatch(acting):
            # The API's bounds for a user id (`as`); a longer one would also
            # make a cookie the browser drops, signing the user out unseen.
            return html(
                render_signin(
                    next_url=next_url,
                    csrf=sessions.csrf(w.session),
                    error="Acting for user: use 1 to 128 characters, no control characters.",
                ),
                w,
                422,
            )
        # A fresh nonce: a token seen before signing in is worth nothing after.
        session = sessions.new(
            key.name, acting if key.allows("act-as") else None, key.fingerprint
        )
        response = RedirectResponse(next_url, status_code=303)
        _set_session(response, session, w.https)
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        form = await _form(request)
        w = who(request)
        refused_origin = foreign_post(request, w)
        if refused_origin is not None:
            return refused_origin
        if not sessions.csrf_ok(w.session, form.get("csrf")):
            return problem(w, "Form refused", "Reload the page and try again.", 403)
        response = RedirectResponse("/signin", status_code=303)
        _set_session(response, sessions.new(), w.https)
        return response

    # -- the page's own files ---------------------------------------------------------

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        media = STATIC_FILES.get(name)
        if media is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return FileResponse(
            STATIC / name,
            media_type=media,
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    return router


def _local_target(target: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site;
    the customer search unless the form names one."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/customers"
    return target


_USER_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN = re.compile(r"https?://[^/?#@\s]+")


def _same_origin(request: Request) -> bool:
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


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the page's forms post nothing else), first
    value of each field. Parsed here rather than with python-multipart, which
    the page would need for nothing else."""
    body = await request.body()
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items() if values}


async def _run_in_thread(func: Any, *args: Any) -> Response:
    result: Response = await run_in_threadpool(func, *args)
    return result


def card_url(base: str, customer_id: str) -> str:
    """The page of one customer, for messages such as `ledger demo`'s."""
    return base.rstrip("/") + customer_path(customer_id)

