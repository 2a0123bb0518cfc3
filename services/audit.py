"""The audit trail's use cases: a subject's history, the hash chain's check and
head, and a read-only role for auditors (`ledger audit`, `ledger db
grant-auditor`, the API's `/v1/audit/*`).

Everything here reads `ledger_events` with plain SQL, never the read models.
Input errors are `ServiceError`s of category USAGE whose messages name each
parameter as the caller spells it: `names` maps the plain names (`customer`,
`since`, `from`, ...) to the caller's (`--customer` for the CLI); a name not
in it is shown plain, as the API's query parameters are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ledger.audit.common import AuditError, parse_position
from ledger.audit.grants import GrantReport
from ledger.audit.grants import grant_auditor as grant
from ledger.audit.history import (
    HistoryFilter,
    Selector,
    iter_history,
    parse_time,
    selector_from_options,
)
from ledger.audit.render import FORMATS, Writer
from ledger.audit.render import write_history as write_events
from ledger.audit.verify import Anchor, VerifyReport, current_anchor, parse_anchor, verify_chain
from ledger.db import Connection
from ledger.reading import events_table_exists, head_position
from services.errors import Category, ServiceError, service_errors

__all__ = [
    "FORMATS",
    "Anchor",
    "GrantReport",
    "HistoryQuery",
    "VerifyReport",
    "VerifyRequest",
    "Writer",
    "chain_head",
    "events_to_verify",
    "grant_auditor",
    "has_events",
    "history_query",
    "verify",
    "verify_request",
    "write_history",
]

Names = Mapping[str, str] | None


@contextmanager
def _usage(names: Names) -> Iterator[None]:
    """AuditErrors become usage errors that speak the caller's parameter names."""
    try:
        yield
    except AuditError as exc:
        raise ServiceError(Category.USAGE, exc.spelled(names or {})) from exc


def _name(names: Names, parameter: str) -> str:
    return (names or {}).get(parameter, parameter)


def has_events(conn: Connection) -> bool:
    """Whether the ledger's events table exists (an audit never creates it)."""
    with service_errors():
        return events_table_exists(conn)


# -- history ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryQuery:
    """Whose history (`selector`) and which of its events (`filters`)."""

    selector: Selector
    filters: HistoryFilter


def history_query(
    *,
    customer: str | None = None,
    order: str | None = None,
    task: str | None = None,
    dialog: str | None = None,
    email: str | None = None,
    since: str | None = None,
    until: str | None = None,
    time_field: str = "occurred",
    actor: str | None = None,
    types: Sequence[str] = (),
    names: Names = None,
) -> HistoryQuery:
    """Check a history's parameters: exactly one of customer, order, task,
    dialog and email; `since`/`until` as RFC 3339 times or dates, compared with
    `time_field` ("occurred" or "recorded"); an actor id; event types."""
    with _usage(names):
        selector = selector_from_options(
            {"customer": customer, "order": order, "task": task, "dialog": dialog, "email": email}
        )
        filters = HistoryFilter(
            since=parse_time(since, _name(names, "since")) if since is not None else None,
            until=parse_time(until, _name(names, "until")) if until is not None else None,
            time_field="recorded" if time_field == "recorded" else "occurred",
            actor_id=actor,
            types=tuple(dict.fromkeys(types)),
        )
    return HistoryQuery(selector, filters)


def write_history(conn: Connection, query: HistoryQuery, output_format: str, out: Writer) -> int:
    """Stream the history `query` asks for to `out` in `output_format` (one of
    FORMATS), an event at a time; returns how many events were written."""
    return write_events(
        iter_history(conn, query.selector, query.filters),
        output_format,
        out,
        query.selector,
        query.filters,
    )


# -- the hash chain ---------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyRequest:
    """Where a chain check starts (None: at the genesis) and the anchor it proves."""

    from_position: int | None = None
    anchor: Anchor | None = None


def verify_request(
    from_text: str | None = None, anchor_text: str | None = None, names: Names = None
) -> VerifyRequest:
    """Check a chain check's parameters: `from` a positive position, `anchor` as
    POSITION:HASH (what `chain_head` gives)."""
    with _usage(names):
        from_position = (
            parse_position(from_text, _name(names, "from")) if from_text is not None else None
        )
        anchor = parse_anchor(anchor_text) if anchor_text is not None else None
    return VerifyRequest(from_position, anchor)


def events_to_verify(conn: Connection, request: VerifyRequest) -> int:
    """How many events a check of `request` recomputes as the ledger stands (for
    a progress bar: `verify` calls `on_progress` with counts adding up to it)."""
    with service_errors():
        return max(head_position(conn) - (request.from_position or 1) + 1, 0)


def verify(
    conn: Connection,
    request: VerifyRequest,
    *,
    on_progress: Callable[[int], None] | None = None,
    names: Names = None,
) -> VerifyReport:
    """Recompute the hash chain up to the current head, checking the anchor on
    the way; the report says whether it is intact or where it first breaks."""
    with _usage(names):
        return verify_chain(
            conn,
            from_position=request.from_position,
            anchor=request.anchor,
            progress=on_progress,
        )


def chain_head(conn: Connection) -> Anchor:
    """The stored head of the chain (position and hash), for an auditor to keep."""
    with service_errors():
        return current_anchor(conn)


# -- auditors' rights -------------------------------------------------------------------


def grant_auditor(conn: Connection, role: str) -> GrantReport:
    """Give an existing PostgreSQL `role` read-only access to the events and the
    audit views, and check it can write nothing."""
    with _usage(None):
        return grant(conn, role)
