"""The card page's sessions and form posts under hostile clients, against a
real server: malformed cookies and CSRF tokens, foreign origins, where a
browser lands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from api.page_session import SESSION_COOKIE
from tests.factories import append_to_url, event
from tests.http_support import Keys, make_keys, page_sign_in, serve_in_thread


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def client(sqlite_url: str, keys: Keys) -> Iterator[httpx.Client]:
    append_to_url(
        sqlite_url,
        [
            event("customer.created", "c1", {"card": {"name": "Ann"}}),
            event("task.created", "c1", {"task_id": "t1", "title": "Call", "assignee_id": "u-1"}),
        ],
    )
    with serve_in_thread(sqlite_url, access=keys.access()) as served:
        yield served


# -- malformed tokens and cookies: refused, never a 500 ------------------------------------

NON_ASCII = ["\u00e9", "abc\u00e9", "\u0416" * 43, "\ud800x"]


@pytest.mark.parametrize("token", NON_ASCII, ids=["e-acute", "suffix", "cyrillic", "surrogate"])
def test_a_non_ascii_csrf_token_is_refused(client: httpx.Client, token: str) -> None:
    encoded = "csrf=" + quote(token.encode("utf-8", "surrogatepass")) + "&key=x"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    for path in ("/signin", "/signout", "/customers/c1/tasks/t1/complete"):
        answer = client.post(path, content=encoded, headers=headers)
        assert answer.status_code in (303, 403), (path, answer.status_code, answer.text)
        if path != "/customers/c1/tasks/t1/complete":
            assert answer.status_code == 403, (path, answer.text)


def test_raw_non_utf8_form_bytes_are_refused(client: httpx.Client) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    for body in (b"csrf=%C3%A9&key=x", b"csrf=%FF%FE&key=x", b"csrf=\xc3\xa9&key=x"):
        for path in ("/signin", "/signout"):
            answer = client.post(path, content=body, headers=headers)
            assert answer.status_code == 403, (path, body, answer.text)


COOKIES = [
    b"abc.\xc3\xa9",
    b"\xc3\xa9.abc",
    b"abc.\xff",
    b"..",
    b".",
    b"abc",
    b'"abc.def"',
    b"abc.def\\",
    b"a" * 5000 + b"." + b"b" * 43,
    b"%C3%A9.%C3%A9",
]


@pytest.mark.parametrize("cookie", COOKIES, ids=lambda c: repr(c[:20]))
def test_a_malformed_session_cookie_is_no_session(
    client: httpx.Client, keys: Keys, cookie: bytes
) -> None:
    headers = {"Cookie": SESSION_COOKIE.encode() + b"=" + cookie}
    page = client.get("/customers/c1", headers=headers)
    # No session: asked to sign in, with a fresh anonymous cookie.
    assert page.status_code == 303 and page.headers["location"].startswith("/signin")
    form = {"content-type": "application/x-www-form-urlencoded"}
    for path in ("/signin", "/signout", "/customers/c1/tasks/t1/complete"):
        answer = client.post(path, content=b"csrf=x&key=x", headers={**headers, **form})
        assert answer.status_code in (303, 403), (path, answer.text)
        assert answer.status_code != 303 or answer.headers["location"].startswith("/signin")
    signin = client.get("/signin", headers=headers)
    assert signin.status_code == 200


def test_a_forged_signature_on_a_real_session_is_no_session(
    client: httpx.Client, keys: Keys
) -> None:
    page_sign_in(client, keys.tokens["agent"])
    value = client.cookies[SESSION_COOKIE]
    body, _, _ = value.partition(".")
    client.cookies.clear()
    forged = {"Cookie": (f"{SESSION_COOKIE}={body}.").encode() + "\u00e9".encode() * 22}
    page = client.get("/customers/c1", headers=forged)
    assert page.status_code == 303 and page.headers["location"].startswith("/signin")


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer \xc3\xa9",
        b"Bearer \xff\xfe",
        "Bearer \u00e9t\u00e9".encode("latin-1"),
        b"Bearer a\x80",
    ],
)
def test_a_non_ascii_bearer_token_is_401(client: httpx.Client, header: bytes) -> None:
    answer = client.get("/v1/customers/c1/tabs/tasks", headers={"Authorization": header})
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


# -- foreign origins -----------------------------------------------------------------------


def task_status(client: httpx.Client, keys: Keys) -> str:
    items = client.get("/v1/customers/c1/tabs/tasks", headers=keys.auth("agent")).json()["items"]
    return str(next(t["status"] for t in items if t["task_id"] == "t1"))


FOREIGN = [
    "http://evil.example",
    "null",
    "http://127.0.0.1:1",  # this host, another port: another origin
    "https://127.0.0.1",
    "http://127.0.0.1:PORT/path",
    "http://user@127.0.0.1:PORT",
    "http://127.0.0.1:x",
    "http://[::1",
]


@pytest.mark.parametrize("origin", FOREIGN)
def test_a_form_posted_from_another_origin_is_refused(
    client: httpx.Client, keys: Keys, origin: str
) -> None:
    csrf = page_sign_in(client, keys.tokens["agent"])
    origin = origin.replace("PORT", str(client.base_url.port))
    complete = client.post(
        "/customers/c1/tasks/t1/complete",
        data={"csrf": csrf, "tz": "UTC"},
        headers={"Origin": origin},
    )
    assert complete.status_code == 403, complete.text
    assert "another site" in complete.text
    assert task_status(client, keys) == "pending"
    signout = client.post("/signout", data={"csrf": csrf}, headers={"Origin": origin})
    assert signout.status_code == 403
    assert client.get("/customers/c1").status_code == 200  # still signed in
    # Signing in from another origin sets no session either.
    client.cookies.clear()
    form = client.get("/signin")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    signin = client.post(
        "/signin",
        data={"csrf": token, "key": keys.tokens["agent"]},
        headers={"Origin": origin},
    )
    assert signin.status_code == 403
    assert client.get("/customers/c1").status_code == 303


def test_a_form_posted_from_this_origin_or_without_one_is_taken(
    client: httpx.Client, keys: Keys
) -> None:
    csrf = page_sign_in(client, keys.tokens["agent"])
    ours = f"http://127.0.0.1:{client.base_url.port}"
    done = client.post(
        "/customers/c1/tasks/t1/complete",
        data={"csrf": csrf, "tz": "UTC"},
        headers={"Origin": ours},
    )
    assert done.status_code == 303, done.text
    assert task_status(client, keys) == "completed"
    # No Origin at all (an older browser, a same-origin GET form): CSRF decides.
    reopened = client.post("/customers/c1/tasks/t1/reopen", data={"csrf": csrf, "tz": "UTC"})
    assert reopened.status_code == 303, reopened.text
    assert task_status(client, keys) == "pending"


# -- where a browser lands ---------------------------------------------------------------


def test_the_root_and_sign_in_without_next_land_on_the_customer_search(
    client: httpx.Client, keys: Keys
) -> None:
    root = client.get("/")
    assert root.status_code == 303 and root.headers["location"] == "/customers"
    asked = client.get("/customers")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/signin?next=%2Fcustomers"
    form = client.get("/signin")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    signed = client.post("/signin", data={"csrf": token, "key": keys.tokens["reader"]})
    assert signed.status_code == 303 and signed.headers["location"] == "/customers"
    search = client.get("/customers")
    assert search.status_code == 200
    assert '<h1 id="customers-title">Customers</h1>' in search.text
    assert 'name="q"' in search.text


def test_the_customer_search_opens_a_card_or_says_no_customer_was_found(
    store_url: str, tmp_path: Path
) -> None:
    append_to_url(store_url, [event("customer.created", "a/b 1", {"card": {"name": "Ann"}})])
    with serve_in_thread(store_url) as client:  # open mode: no sign-in
        found = client.get("/customers", params={"q": "a/b 1"})
        assert found.status_code == 303
        assert found.headers["location"] == "/customers/a%2Fb%201"
        assert client.get(found.headers["location"]).status_code == 200
        assert client.get("/customers", params={"q": "  a/b 1 "}).status_code == 303
        for missing in ("nobody", "<b>x</b>", "x" * 129, "a/b", "\u00e9"):
            answer = client.get("/customers", params={"q": missing})
            assert answer.status_code == 200, (missing, answer.text)
            assert "No customer found for" in answer.text
            assert "<b>x</b>" not in answer.text
            assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        # Not a search anyone can type: refused in a sentence, as on every door.
        refused = client.get("/customers", params={"q": "a\x00b"})
        assert refused.status_code == 400 and "control characters" in refused.text


@pytest.mark.parametrize("acting", ["u" * 129, "u\x01", "\u00e9" * 3000])
def test_an_acting_user_past_the_api_bounds_is_refused_at_sign_in(
    client: httpx.Client, keys: Keys, acting: str
) -> None:
    form = client.get("/signin")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    answer = client.post(
        "/signin", data={"csrf": token, "key": keys.tokens["backend"], "act_as": acting}
    )
    assert answer.status_code == 422
    assert "Acting for user: use 1 to 128 characters" in answer.text
    assert client.get("/customers/c1").status_code == 303  # not signed in
