"""Reading a customer's card: one tab (`tab_request`, `tab_answer`,
`tab_rows`) or the card's header (`card_header`), each brought up to date with
every event stored before the call (read-your-writes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.db import Connection
from ledger.people import EMPTY as EMPTY_DIRECTORY
from ledger.people import Directory
from ledger.rights import ALLOW_ALL, RightsPolicy
from ledger.times import BadTime, parse_user_time
from projections import registry
from projections.card import card_text
from projections.paging import DEFAULT_LIMIT as PAGE_LIMIT
from projections.paging import MAX_LIMIT, Page
from projections.sealing import revealing
from projections.segments import membership_names
from projections.tabs import TABS, TabRequest, check_cursor, customer_exists, read_tab, tab_counts
from projections.timeline import DEFAULT_LIMIT, TimelineQuery, first_event_at

# A tab read imports none of the tabs' pydantic models, the runner or psycopg unless it
# needs them (tests/integration/test_startup.py): they are imported where used.
if TYPE_CHECKING:
    from projections.models import LastEmail, TabAnswer, TaskItem, TimelineItem

from services.errors import Category, ServiceError, service_errors
from services.freshness import catch_up

# Callers take the tabs' names, the default page sizes (PAGE_LIMIT, the
# timeline's DEFAULT_LIMIT) and the largest (MAX_LIMIT) from here.
__all__ = [
    "CARD_COUNT_CAP",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "PAGE_LIMIT",
    "TABS",
    "TAB_PARAMETERS",
    "CardHeader",
    "TabAnswer",
    "TaskItem",
    "TimelineItem",
    "card_header",
    "require_customer",
    "tab_answer",
    "tab_request",
    "tab_rows",
]

# The tabs' answer models, for a door that serves them typed (the API's response
# models): looked up on first access (`__getattr__`), so a read that only prints
# rows never imports them.
_MODELS = ("TabAnswer", "TaskItem", "TimelineItem")


def __getattr__(name: str) -> Any:
    """`TabAnswer` (any tab's answer) and `TaskItem` (a task as the tasks tab
    lists it), imported when first asked for."""
    if name in _MODELS:
        from projections import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The tab parameters' names as a caller spells them (CLI options or query parameters).
TAB_PARAMETERS = ("kind", "since", "until", "limit", "cursor", "as")


def tab_request(
    customer_id: str,
    tab: str,
    *,
    kinds: Sequence[str] = (),
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    viewer: str | None = None,
    policy: RightsPolicy = ALLOW_ALL,
    names: Mapping[str, str] | None = None,
    people: Directory | None = None,
) -> TabRequest:
    """Check a tab's parameters and build its request. `names` maps each of
    TAB_PARAMETERS to the caller's spelling, for the messages."""

    def name(parameter: str) -> str:
        return (names or {}).get(parameter, parameter)

    if tab not in TABS:
        raise ServiceError(Category.USAGE, f"unknown tab {tab!r} (tabs: {', '.join(TABS)})")
    timeline_only = {
        "kind": bool(kinds),
        "since": since is not None,
        "until": until is not None,
    }
    if tab != "timeline":
        for parameter, given in timeline_only.items():
            if given:
                raise ServiceError(
                    Category.USAGE, f"{name(parameter)} applies to the timeline tab only"
                )
    if viewer is not None and tab != "tasks":
        raise ServiceError(Category.USAGE, f"{name('as')} applies to the tasks tab only")

    def moment(parameter: str, text: str | None) -> datetime | None:
        if text is None:
            return None
        try:
            return parse_user_time(text)
        except BadTime as exc:
            raise ServiceError(Category.USAGE, f"{name(parameter)}: {exc}") from None

    try:
        request = TabRequest(
            customer_id=customer_id,
            tab=tab,
            timeline=TimelineQuery(
                kinds=tuple(dict.fromkeys(kinds)),
                since=moment("since", since),
                until=moment("until", until),
                limit=limit if limit is not None else DEFAULT_LIMIT,
                cursor=cursor,
            )
            if tab == "timeline"
            else TimelineQuery(),
            viewer=viewer,
            policy=policy if viewer is not None else ALLOW_ALL,
            page=Page(limit if limit is not None else PAGE_LIMIT, cursor)
            if tab != "timeline"
            else Page(),
            people=people or EMPTY_DIRECTORY,
        )
        if cursor is not None:
            check_cursor(tab, customer_id, cursor)
    except ValueError as exc:  # BadCursor included
        raise ServiceError(Category.USAGE, str(exc)) from None
    return request


def tab_answer(conn: Connection, request: TabRequest) -> TabAnswer:
    """One tab, brought up to date with every event stored before the call."""
    from projections.models import answer

    return answer(tab_rows(conn, request))


def tab_rows(conn: Connection, request: TabRequest) -> dict[str, Any]:
    """`tab_answer` as the plain JSON value its model dumps to (the tests hold the
    two equal for every tab): `ledger tab` prints it without building the model's
    validator, which costs more than the read itself."""
    from services.people import name_people

    with service_errors():
        catch_up(conn, [registry.get(request.tab), registry.get("people")])
        rows = read_tab(conn, request)
        if not rows["items"]:
            require_customer(conn, request.customer_id)
    name_people(conn, rows["items"], request.people)
    return rows


def require_customer(conn: Connection, customer_id: str) -> None:
    """NOT_FOUND (`customer_missing`) for a customer the ledger holds no event
    of: the one meaning of an unknown customer on every door (the API's 404,
    the CLI's exit 1, the page's 404)."""
    with service_errors():
        catch_up(conn, [registry.get("timeline")])
        if not customer_exists(conn, customer_id):
            raise ServiceError(
                Category.NOT_FOUND, f"no customer {customer_id!r}", code="customer_missing"
            )


@dataclass(frozen=True)
class CardHeader:
    """What a customer card shows above its tabs."""

    name: str | None  # the card's current name
    last_email: LastEmail | None  # the newest email sent, and whether it was opened
    counts: dict[str, int]  # items per tab (the timeline's: every event), up to count_cap
    count_cap: int  # a count of count_cap + 1 means "more than count_cap"
    phone: str | None = None  # the card's current phone and email (revealed)
    email: str | None = None
    segments: tuple[str, ...] = ()  # the segments the customer is in now, by name
    since: str | None = None  # when the customer's first event happened


# The tab badges show up to this many items, then "1,000+": counting costs a
# walk of the index per tab, and at 10,000 those walks were most of the page's
# time for a busy customer (bench.page).
CARD_COUNT_CAP = 1_000


def card_header(conn: Connection, customer_id: str, count_cap: int = CARD_COUNT_CAP) -> CardHeader:
    """The card's header, every read model brought up to date first. Capped
    counts and the newest rows only, so a customer with 100,000 events costs
    about what a small one does."""
    from projections.models import EmailsTab, answer

    with service_errors():
        catch_up(conn, [registry.get(name) for name in registry.NAMES])
        counts = tab_counts(conn, customer_id, count_cap)
        if counts["timeline"] == 0:
            require_customer(conn, customer_id)
        card = {f: card_text(conn, customer_id, f) for f in ("name", "phone", "email")}
        emails = answer(read_tab(conn, TabRequest(customer_id, "emails", page=Page(limit=1))))
        segments = membership_names(revealing(conn), customer_id)
        since = first_event_at(conn, customer_id)
    assert isinstance(emails, EmailsTab)
    return CardHeader(
        card["name"],
        emails.last_email,
        counts,
        count_cap,
        phone=card["phone"],
        email=card["email"],
        segments=tuple(name or segment_id for segment_id, name in segments),
        since=since,
    )
