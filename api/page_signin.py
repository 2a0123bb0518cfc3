"""Signing in to the card page and out: with an access file, a browser signs
in once with an access key (`POST /signin`) and gets the session cookie of
`page_session`; `POST /signout` ends it. In open mode there is nothing to
sign in to."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.page_common import Visit, local_target, page_tenant_refusal, read_form, visit
from api.page_view import render_signin

# The API's bounds for a user id (`as`).
_USER_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")

router = APIRouter(include_in_schema=False)


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request) -> Response:
    """The sign-in form; straight on to `next` for a visitor signed in already."""
    v = visit(request)
    next_url = local_target(request.query_params.get("next"))
    if v.who.open_mode or v.who.key is not None:
        return RedirectResponse(next_url, status_code=303)
    return v.html(render_signin(next_url=next_url, csrf=v.sessions.csrf(v.who.session)))


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Sign in with an access key (and, for an `act-as` key, the user to act
    for), then on to `next`."""
    form = await read_form(request)
    v = visit(request)
    refused_origin = v.foreign_post()
    if refused_origin is not None:
        return refused_origin
    next_url = local_target(form.get("next"))
    access = v.server.access
    if access is None:
        return RedirectResponse(next_url, status_code=303)
    if not v.csrf_ok(form.get("csrf")):
        return _form_again(v, next_url, "The form expired: please sign in again.", 403)
    key = access.verify(form.get("key", "").strip())
    if key is None:
        return _form_again(v, next_url, "That access key is not valid.", 401)
    if not key.allows("read"):
        return _form_again(v, next_url, "That access key cannot read customer cards.", 403)
    refused = page_tenant_refusal(v.server, key)
    if refused is not None:
        # A session belongs to the tenant of the key that signed in: a key of
        # none (or of all) could show no one store's cards.
        return _form_again(v, next_url, refused[1], refused[0])
    acting = form.get("act_as", "").strip() or None
    if acting is not None and not _USER_ID.fullmatch(acting):
        # A longer one would also make a cookie the browser drops, signing the
        # user out unseen.
        error = "Acting for user: use 1 to 128 characters, no control characters."
        return _form_again(v, next_url, error, 422)
    # A fresh nonce: a token seen before signing in is worth nothing after.
    session = v.sessions.new(key.name, acting if key.allows("act-as") else None, key.fingerprint)
    response = RedirectResponse(next_url, status_code=303)
    v.set_session(response, session)
    return response


def _form_again(v: Visit, next_url: str, error: str, status: int) -> HTMLResponse:
    """The sign-in form again, saying why it did not work."""
    csrf = v.sessions.csrf(v.who.session)
    return v.html(render_signin(next_url=next_url, csrf=csrf, error=error), status)


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End the session: a new one, signed in to nothing."""
    form = await read_form(request)
    v = visit(request)
    refused_origin = v.foreign_post()
    if refused_origin is not None:
        return refused_origin
    if not v.csrf_ok(form.get("csrf")):
        return v.problem("Form refused", "Reload the page and try again.", 403)
    response = RedirectResponse("/signin", status_code=303)
    v.set_session(response, v.sessions.new())
    return response
