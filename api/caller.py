"""Who is calling: the access key a request came with (`Caller`), the
dependencies that require a scope of it (`Ingest`, `Reader`, ...; the scopes
themselves are listed in `api/scopes.py`), and whom a task action acts as
(`acting_user`, shared with the card page)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.access import AccessKey
from api.problems import Refused
from api.state import server_state
from api.tenancy import choose_for_request, header_tenant
from services.errors import Category, ServiceError


@dataclass(frozen=True)
class Caller:
    """The key a request came with; `key` is None when the server runs open."""

    key: AccessKey | None

    @property
    def name(self) -> str:
        """The key's name for messages and logs ("-" in open mode)."""
        return self.key.name if self.key else "-"

    @property
    def user(self) -> str | None:
        """The user the key acts as, if it names one."""
        return self.key.user if self.key else None

    def allows(self, scope: str) -> bool:
        """Whether the key has `scope` (every scope in open mode)."""
        return self.key is None or self.key.allows(scope)

    def require(self, scope: str) -> None:
        """Refuse (403) a key without `scope`."""
        if not self.allows(scope):
            raise Refused(403, f"the key {self.name!r} lacks the scope {scope!r}")


def authenticate(request: Request, *, store: bool = True) -> Caller:
    """The caller of `request` by its `Authorization: Bearer` key, or 401; in
    open mode (no access file) every caller, as `Caller(None)`. For a request
    that reaches a `store` (all but /metrics), chooses the tenant it is for,
    or refuses it (`api.tenancy.choose_tenant`)."""
    state = server_state(request)
    if state.access is None:
        key = None
    else:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(401, "an access key is required: Authorization: Bearer TOKEN")
        key = state.access.verify(token.strip())
        if key is None:
            raise Refused(401, "the access key is not valid")
        request.state.key_name = key.name
    if not store:
        return Caller(key)
    scope_state = request.scope.setdefault("state", {})
    choose_for_request(scope_state, state, key, header_tenant(request.headers))
    return Caller(key)


# Dependencies are `async def`: they do no I/O, and a sync dependency would cost
# every request an extra hop through the thread pool.
def requires(scope: str) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency: the authenticated caller, refused (403) without `scope`."""

    async def check(request: Request) -> Caller:
        caller = authenticate(request)
        caller.require(scope)
        return caller

    return check


async def authenticated(request: Request) -> Caller:
    """A dependency: the authenticated caller, whatever its scopes."""
    return authenticate(request)


# The caller of an endpoint, checked for one scope (or, for task actions, only
# authenticated: which scope applies depends on the acting user).
Ingest = Annotated[Caller, Depends(requires("ingest"))]
Reader = Annotated[Caller, Depends(requires("read"))]
Auditor = Annotated[Caller, Depends(requires("audit"))]
Operator = Annotated[Caller, Depends(requires("ops"))]
Eraser = Annotated[Caller, Depends(requires("erase"))]
Merger = Annotated[Caller, Depends(requires("merge"))]
Anyone = Annotated[Caller, Depends(authenticated)]


def acting_user(caller: Caller, requested: str | None) -> str:
    """Who a task action acts as: the key's own user (`tasks`), or the user the
    request names (`act-as`)."""
    if caller.key is None:
        if requested is None:
            raise ServiceError(Category.USAGE, "name the acting user with the `as` parameter")
        return requested
    if requested is not None and requested != caller.user:
        caller.require("act-as")
        return requested
    if not caller.allows("tasks"):
        if caller.allows("act-as"):
            raise ServiceError(Category.USAGE, "name the acting user with the `as` parameter")
        raise Refused(403, f"the key {caller.name!r} lacks the scope 'tasks'")
    if caller.user is None:
        raise Refused(403, f"the key {caller.name!r} acts as no user; give it one")
    return caller.user


def marking_user(caller: Caller, requested: str | None) -> str:
    """Who a "not a duplicate" mark acts as (the caller has the scope `merge`): the
    key's own user, or the user the request names (`act-as`)."""
    if caller.key is None:
        if requested is None:
            raise ServiceError(Category.USAGE, "name the acting user with the `as` parameter")
        return requested
    if requested is not None and requested != caller.user:
        caller.require("act-as")
        return requested
    if caller.user is None:
        raise Refused(403, f"the key {caller.name!r} acts as no user; give it one")
    return caller.user
