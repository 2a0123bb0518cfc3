"""The customer card page's view: tab JSON objects in, HTML out.

Everything the page shows comes from the tabs' JSON objects (what
`GET /v1/customers/{id}/tabs/{tab}` and `ledger tab --format json` return);
this module only arranges and formats them. No I/O: the router reads the tabs
through the service layer and hands the answers here, which keeps rendering
testable and measurable on its own.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.page_time import COMMON_ZONES, Clock, local_input, local_moment
from ledger.kinds import KINDS
from ledger.summaries import (
    channel_text,
    duration_text,
    field_label,
    moment_in,
    utm_text,
    words,
)
from ledger.summaries import value_text as summary_value

# Tab name -> label, in the order the seed's block shows them.
TAB_LABELS: dict[str, str] = {
    "timeline": "All interactions",
    "tasks": "Tasks",
    "visits": "Visits",
    "segments": "Segments",
    "chats": "Chats",
    "emails": "Emails",
    "orders": "Orders",
    "card": "Card changes",
}
# Timeline kind -> how the page names it: the filter's choices (plural) and a
# row's kind (singular). The filter's values stay the kinds the API takes.
KIND_LABELS: dict[str, str] = {
    "calls": "Calls",
    "emails": "Emails",
    "sms": "SMS",
    "chats": "Chats",
    "visits": "Visits",
    "orders": "Orders",
    "segments": "Segments",
    "tasks": "Tasks",
    "notes": "Notes",
    "files": "Files",
    "card": "Card changes",
}
KIND_ITEM_LABELS: dict[str, str] = {
    "calls": "Call",
    "emails": "Email",
    "sms": "SMS",
    "chats": "Chat",
    "visits": "Visit",
    "orders": "Order",
    "segments": "Segment",
    "tasks": "Task",
    "notes": "Note",
    "files": "File",
    "card": "Card",
}
ACTION_LABELS: dict[str, str] = {
    "edit": "Edit",
    "complete": "Complete",
    "reopen": "Reopen",
    "delete": "Delete",
}

TEMPLATES = Path(__file__).parent / "templates"

_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    # Every value is escaped unless a template says otherwise (none does): names,
    # notes and chat texts come from producers and may hold markup.
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def plain_text(value: object) -> str:
    """Text without control characters (a producer's text may carry escapes or
    bidi overrides); newlines and tabs become spaces."""
    text = "" if value is None else str(value)
    out = []
    for ch in text:
        if ch in "\n\t\r":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf"):
            continue
        else:
            out.append(ch)
    return "".join(out)


def safe_link(url: object) -> str | None:
    """`url` if a browser may follow it from our page (http or https only:
    a `javascript:` or `data:` URL from a producer must never become a link)."""
    if not isinstance(url, str):
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def shown_words(value: object) -> str:
    """A status or other code as words (`ledger.summaries.words`), without the
    control characters a producer's text may carry."""
    return plain_text(words(value))


_ENV.filters["plain_text"] = plain_text
_ENV.filters["words"] = shown_words
_ENV.filters["segment"] = lambda value: quote(str(value), safe="")


def actor_name(actor: Mapping[str, Any] | None) -> str:
    """Who acted, as the page shows it: the actor's name, else `kind:id`; "—" for none."""
    if not actor:
        return "—"
    return plain_text(actor.get("name") or f"{actor.get('kind')}:{actor.get('id')}")


def duration(seconds: object) -> str:
    """Whole seconds as every door shows them ("10 min 13 s", "42 s"); "—" when
    not an int."""
    return duration_text(seconds)


def person(name: object, person_id: object) -> str:
    """A person as the page shows them: the name, else the id; "—" for no one."""
    if name:
        return plain_text(name)
    return "—" if person_id is None else plain_text(person_id)


def value_text(value: object) -> str:
    """A field's value as plain text, "—" for None (an unset field, not an empty one)."""
    return "—" if value is None else plain_text(value)


def change_value(field: str, value: object, clock: Clock | None = None) -> str:
    """One side of a field change as every door words it (`ledger.summaries`:
    "—" for none, statuses as words, no quotes), as plain text; a timestamp
    in the viewer's zone, as the page's other times (`clock`; else UTC)."""
    if clock is not None and isinstance(value, str) and moment_in(value) is not None:
        return clock.show(value)
    return plain_text(summary_value(field, value))


def customer_path(customer_id: str) -> str:
    """The card page's path for a customer, the id quoted as one path segment."""
    return "/customers/" + quote(customer_id, safe="")


@dataclass(frozen=True)
class View:
    """What the viewer asked for: which tab, in which zone, which page of it."""

    customer_id: str
    tab: str = "timeline"
    zone: str = "UTC"
    kinds: tuple[str, ...] = ()
    cursor: str | None = None  # None: the newest page

    def url(self, **changes: Any) -> str:
        """This page with some parameters changed (defaults left out of the URL)."""
        tab = changes.get("tab", self.tab)
        params: list[tuple[str, str]] = []
        if tab != "timeline":
            params.append(("tab", tab))
        zone_name = changes.get("zone", self.zone)
        if zone_name != "UTC":
            params.append(("tz", zone_name))
        if tab == "timeline":
            params.extend(("kind", k) for k in changes.get("kinds", self.kinds))
        cursor = changes.get("cursor", self.cursor if tab == self.tab else None)
        if cursor:
            params.append(("cursor", cursor))
        if changes.get("edit"):
            params.append(("edit", changes["edit"]))
        path = customer_path(self.customer_id)
        return f"{path}?{urlencode(params)}" if params else path


@dataclass(frozen=True)
class Viewer:
    """Who looks at the page and what the page may offer them."""

    label: str | None  # shown in the header; None in open mode
    can_act: bool  # holds a scope for task actions
    signed_in: bool
    csrf: str
    # Holds the scope `merge`: merges, their undoing, "not a duplicate" marks.
    can_merge: bool = False


@dataclass(frozen=True)
class Notice:
    """A one-line message shown above the card (an action refused, a zone unknown)."""

    text: str
    kind: str = "info"  # "info" or "error"
    href: str | None = None  # a path on this server the notice links to ...
    link_text: str | None = None  # ... with this text


@dataclass(frozen=True)
class TabLink:
    """One tab in the card's tab bar: its label, its count and where it leads."""

    name: str
    label: str
    count: str  # "80", or "10,000+" past the header's count cap
    href: str
    current: bool


@dataclass
class CardPage:
    """Everything the card template shows."""

    view: View
    viewer: Viewer
    clock: Clock
    name: str | None
    last_email: Mapping[str, Any] | None
    counts: Mapping[str, int]
    count_cap: int  # a count above it is shown as "cap+"
    answer: Mapping[str, Any]  # the current tab's JSON object
    notice: Notice | None = None
    editing: Mapping[str, Any] | None = None  # the task whose edit form is open
    extra: dict[str, Any] = field(default_factory=dict)
    phone: str | None = None  # the header's card values (revealed; "[erased]" once erased)
    email: str | None = None
    segments: Sequence[str] = ()  # the segments the customer is in now, by name
    since: str | None = None  # the customer's first event

    @property
    def tabs(self) -> list[TabLink]:
        return [
            TabLink(
                name=name,
                label=label,
                count=self.count_text(self.counts.get(name, 0)),
                href=self.view.url(tab=name, kinds=(), cursor=None),
                current=name == self.view.tab,
            )
            for name, label in TAB_LABELS.items()
        ]

    @property
    def path(self) -> str:
        return customer_path(self.view.customer_id)

    @property
    def task_path(self) -> str:
        return self.path + "/tasks"

    def count_text(self, count: int) -> str:
        return f"{self.count_cap:,}+" if count > self.count_cap else f"{count:,}"

    @property
    def title(self) -> str:
        return self.name or self.view.customer_id

    @property
    def older_url(self) -> str | None:
        cursor = self.answer.get("next_cursor")
        return self.view.url(cursor=cursor) if cursor else None

    @property
    def shown(self) -> int:
        return len(self.answer.get("items", ()))

    @property
    def total(self) -> int:
        return self.counts.get(self.view.tab, self.shown)

    @property
    def newest_url(self) -> str | None:
        return self.view.url(cursor=None) if self.view.cursor else None


def render_card(page: CardPage) -> str:
    """The customer card page's HTML."""
    return _ENV.get_template("card.html").render(
        page=page,
        viewer=page.viewer,
        kinds=KINDS,
        kind_labels=KIND_LABELS,
        kind_item_labels=KIND_ITEM_LABELS,
        zones=COMMON_ZONES,
        action_labels=ACTION_LABELS,
        actor_name=actor_name,
        duration=duration,
        value_text=value_text,
        change_value=change_value,
        safe_link=safe_link,
    )


def render_view(template: str, **context: Any) -> str:
    """A page template (an order's history, a dialogue) with the helpers the card's
    templates use."""
    return _ENV.get_template(template).render(
        actor_name=actor_name,
        value_text=value_text,
        change_value=change_value,
        safe_link=safe_link,
        **context,
    )


def render_signin(*, next_url: str, csrf: str, error: str | None = None) -> str:
    """The sign-in form's HTML; after signing in the browser goes to `next_url`."""
    return _ENV.get_template("signin.html").render(
        next_url=next_url, csrf=csrf, error=error, viewer=None
    )


# What a search result says it was found by.
_MATCHED_TEXT = {
    "id": "found by customer id",
    "phone": "found by phone",
    "email": "found by e-mail",
    "name": "found by name",
}


def render_customers(
    *,
    query: str,
    answer: Mapping[str, Any] | None,
    next_url: str | None,
    viewer: Viewer | None,
) -> str:
    """The customer search page's HTML: the form, and with a search's `answer`
    (`find_customers(...).as_json()`) its results linking to the cards, or a
    sentence saying it found no one."""
    results = [
        {
            **item,
            "href": customer_path(item["customer_id"]),
            "matched_text": _MATCHED_TEXT[item["matched"]],
        }
        for item in (answer or {}).get("items", ())
    ]
    return _ENV.get_template("customers.html").render(
        query=query, searched=answer is not None, results=results, next_url=next_url, viewer=viewer
    )


def render_not_found(*, customer_id: str | None, viewer: Viewer | None) -> str:
    """The 404 page's HTML: no such customer, or (`customer_id` None) no page at
    this address."""
    return _ENV.get_template("not_found.html").render(customer_id=customer_id, viewer=viewer)


def render_problem(*, title: str, detail: str, viewer: Viewer | None) -> str:
    """The HTML of an error page: what went wrong and why."""
    return _ENV.get_template("problem.html").render(title=title, detail=detail, viewer=viewer)


def task_of(answer: Mapping[str, Any], task_id: str) -> Mapping[str, Any] | None:
    """The task with this id among a tasks tab answer's items (a copy), or None."""
    for item in answer.get("items", ()):
        if item.get("task_id") == task_id:
            return dict(item)
    return None


def edit_changes(
    task: Mapping[str, Any], form: Mapping[str, str], clock: Clock
) -> list[dict[str, Any]]:
    """The edit form's fields that differ from the task, as `{"field", "new"}`
    changes (the server fills `old`). Due dates are typed in the viewer's zone."""
    changes: list[dict[str, Any]] = []
    title = form.get("title", "").strip()
    if title and title != task.get("title"):
        changes.append({"field": "title", "new": title})
    assignee = form.get("assignee_id", "").strip() or None
    if assignee != task.get("assignee_id"):
        changes.append({"field": "assignee_id", "new": assignee})
    due_text = form.get("due_at", "").strip()
    due = local_moment(due_text, clock) if due_text else None
    current = clock.moment(task.get("due_at"))
    if current is not None:  # the form shows minutes: seconds are not a change
        current = current.replace(second=0, microsecond=0)
    if due != current:
        changes.append({"field": "due_at", "new": None if due is None else due.isoformat()})
    return changes


_ENV.globals["local_input"] = local_input
# People by name, statuses and field names as words (ledger.summaries' rules).
_ENV.globals.update(
    person=person,
    words=shown_words,
    field_label=field_label,
    channel_text=channel_text,
    utm_text=utm_text,
)


def kinds_from(values: Sequence[str]) -> tuple[str, ...]:
    """The `?kind=` filters in KINDS order, without repeats; ValueError names an
    unknown kind."""
    unknown = sorted(set(values) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kind {plain_text(unknown[0])!r}")
    return tuple(k for k in KINDS if k in values)
