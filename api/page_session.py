"""Browser sessions for the card page: a signed cookie and CSRF tokens.

The cookie holds no secret and no token: only a random nonce, the access
key's *name* and fingerprint (looked up again on every request, so a key
removed from the access file, or given a new token, stops working as soon as
the server has read the file again), the user an `act-as` key acts for, and
when it was issued, signed with HMAC-SHA256. It is HttpOnly and
SameSite=Strict. Every visitor, signed in or not, gets one, because the CSRF
token of each form is derived from its nonce: a form posted from another site
(or without the token) is refused, also in open mode.

The signing secret is `LEDGER_SESSION_SECRET` when set (several server
processes behind one address must share it); otherwise a random one per
process, so sessions end when the server restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass

from ledger.environment import SESSION_SECRET_ENV

SESSION_COOKIE = "ledger_session"
SESSION_MAX_AGE = 12 * 3600  # seconds: a working day, then sign in again
# The message a form's answer leaves for the page it redirects to (post/
# redirect/get): signed, read once, and only for a short while.
FLASH_COOKIE = "ledger_flash"
FLASH_MAX_AGE = 60  # seconds

# What `dump` writes: base64url body, a dot, the 43-character base64url of an
# HMAC-SHA256. Anything else is not ours. 4096: what browsers keep of one
# cookie, so a hostile one costs no more to check than a real one.
_COOKIE = re.compile(r"[A-Za-z0-9_-]{1,4096}\.[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Session:
    """What a session cookie carries: a random nonce (the CSRF tokens' seed), when
    it was issued, and who signed in (nobody yet when `key_name` is None)."""

    nonce: str
    issued: int
    key_name: str | None = None  # None: not signed in
    acting_user: str | None = None  # what an `act-as` key acts for
    key_fingerprint: str | None = None  # AccessKey.fingerprint at sign-in


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of a caller's text with ours. Compared as bytes:
    `hmac.compare_digest` raises TypeError on str with non-ASCII characters,
    which a form field or a cookie may hold; "surrogatepass" because a decoded
    form can carry lone surrogates that plain UTF-8 refuses to encode."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Makes, signs and checks session cookies and their CSRF tokens with keys
    derived from one secret (`LEDGER_SESSION_SECRET`, else random per process)."""

    def __init__(self, secret: bytes | None = None) -> None:
        if secret is None:
            configured = os.environ.get(SESSION_SECRET_ENV)
            secret = configured.encode() if configured else secrets.token_bytes(32)
        # Derive separate keys so a session signature can never pass as a CSRF token.
        self._cookie_key = hmac.digest(secret, b"ledger-page/session", hashlib.sha256)
        self._csrf_key = hmac.digest(secret, b"ledger-page/csrf", hashlib.sha256)
        self._flash_key = hmac.digest(secret, b"ledger-page/flash", hashlib.sha256)

    def new(
        self,
        key_name: str | None = None,
        acting_user: str | None = None,
        key_fingerprint: str | None = None,
    ) -> Session:
        return Session(
            secrets.token_urlsafe(16), int(time.time()), key_name, acting_user, key_fingerprint
        )

    def dump(self, session: Session) -> str:
        body = _b64(
            json.dumps(
                [
                    session.nonce,
                    session.issued,
                    session.key_name,
                    session.acting_user,
                    session.key_fingerprint,
                ],
                separators=(",", ":"),
            ).encode()
        )
        return f"{body}.{self._sign(body)}"

    def load(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged,
        malformed or expired."""
        if not cookie or not _COOKIE.fullmatch(cookie):
            return None
        body, signature = cookie.split(".")
        if not _same(signature, self._sign(body)):
            return None
        try:
            nonce, issued, key_name, acting_user, fingerprint = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if not isinstance(nonce, str) or not isinstance(issued, int):
            return None
        if (now if now is not None else time.time()) - issued > SESSION_MAX_AGE:
            return None
        return Session(nonce, issued, key_name, acting_user, fingerprint)

    def csrf(self, session: Session) -> str:
        return _b64(hmac.digest(self._csrf_key, session.nonce.encode(), hashlib.sha256))

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return _same(token, self.csrf(session))

    def _sign(self, body: str) -> str:
        return _b64(hmac.digest(self._cookie_key, body.encode(), hashlib.sha256))

    def flash(
        self, session: Session, text: str, kind: str, link: tuple[str, str] | None = None
    ) -> str:
        """A flash cookie's value: `text` of `kind` ("info", "error") for the
        next page this session shows, with an optional `link` (a path on this
        server, its text), signed and bound to the session's nonce."""
        fields: list[object] = [session.nonce, int(time.time()), kind, text]
        if link is not None:
            fields.extend(link)
        body = _b64(json.dumps(fields, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        return f"{body}.{_b64(hmac.digest(self._flash_key, body.encode(), hashlib.sha256))}"

    def load_flash(
        self, session: Session, cookie: str | None, now: float | None = None
    ) -> tuple[str, str, tuple[str, str] | None] | None:
        """The (text, kind, link) of a flash cookie of this session, or None when
        it is missing, forged, another session's or older than FLASH_MAX_AGE."""
        if not cookie or not _COOKIE.fullmatch(cookie):
            return None
        body, signature = cookie.split(".")
        expected = _b64(hmac.digest(self._flash_key, body.encode(), hashlib.sha256))
        if not _same(signature, expected):
            return None
        try:
            nonce, issued, kind, text, *rest = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        link = None
        if len(rest) == 2 and all(isinstance(r, str) for r in rest):
            link = (str(rest[0]), str(rest[1]))
        if nonce != session.nonce or not isinstance(issued, int):
            return None
        if (now if now is not None else time.time()) - issued > FLASH_MAX_AGE:
            return None
        if kind not in ("info", "error") or not isinstance(text, str):
            return None
        return text, kind, link
