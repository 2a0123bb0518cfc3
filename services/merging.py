"""Merging customers and undoing a merge (`ledger customers merge` / `unmerge`,
`POST /v1/customers/{id}/merge` / `unmerge`, the card page's merge and undo).

A merge is two kinds of event, appended all or nothing: `customer.merged` on
the priority customer's stream (what it absorbed, the card values kept) and
`customer.absorbed` on each absorbed one's. Nothing stored is copied: the read
models fold the absorbed customers' rows into the priority's tabs
(projections.merges). An undo is `customer.unmerged` and `customer.released`.
The domain checks the rules (ledger.domain) when the events are appended, so
two merges racing over one customer leave exactly one applied; the checks here
only say the same earlier, with the preview's numbers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ledger.db import Connection
from ledger.environment import UNDO_WINDOW_ENV
from ledger.normalise import default_region, email_key, phone_key
from ledger.rights import RightsPolicy
from projections import registry
from projections.card import card_text, card_values
from projections.duplicates import shared_contacts
from projections.merges import members as merge_members
from projections.merges import merged_at, merged_into
from projections.tabs import TABS, customer_exists, tab_counts
from services.appending import append_items, refusal, user_events
from services.errors import Category, ServiceError, service_errors
from services.freshness import catch_up

if TYPE_CHECKING:
    from ledger.application import LedgerApplication

MERGE_RIGHT = "customers.merge"  # merge, undo and "not a duplicate" marks
MAX_ABSORBED = 20  # customers one merge absorbs at most (the event's bound)


@dataclass(frozen=True)
class MergeRequest:
    """Merge `absorb` into the priority customer `customer_id`, as `user_id`.
    `keep` names, per differing card field, the customer whose value stays (the
    priority's by default); `dry_run` previews; `confirm` is needed for
    customers that share no phone number or e-mail address."""

    customer_id: str
    absorb: tuple[str, ...]
    user_id: str
    reason: str = ""
    keep: Mapping[str, str] = field(default_factory=dict)
    dry_run: bool = False
    confirm: bool = False
    source: str = "ledger"


@dataclass(frozen=True)
class Conflict:
    """A card field the merged customers hold different values of."""

    field: str
    values: dict[str, Any]  # customer id -> its value

    def as_json(self) -> dict[str, Any]:
        """The conflict as every door answers it."""
        return {"field": self.field, "values": self.values}


@dataclass(frozen=True)
class MergeOutcome:
    """A merge's preview or result: the card it leads to, how many items move
    per tab, the differing fields, and whether it needs a confirmation (`why`)."""

    customer_id: str
    absorbed: tuple[str, ...]
    card: dict[str, Any]
    moved: dict[str, int]
    conflicts: tuple[Conflict, ...]
    needs_confirmation: bool
    applied: bool
    why: str | None = None  # what the confirmation is for
    names: dict[str, str | None] = field(default_factory=dict)  # each customer's card name

    def as_json(self) -> dict[str, Any]:
        """The answer of every door (docs/merging.md)."""
        return {
            "customer_id": self.customer_id,
            "absorbed": list(self.absorbed),
            "card": self.card,
            "moved": self.moved,
            "conflicts": [c.as_json() for c in self.conflicts],
            "needs_confirmation": self.needs_confirmation,
            "confirmation_reason": self.why,
            "applied": self.applied,
        }


@dataclass(frozen=True)
class UnmergeRequest:
    """Undo the merge of `released` into the priority customer `customer_id`."""

    customer_id: str
    released: str
    user_id: str
    reason: str
    source: str = "ledger"


@dataclass(frozen=True)
class Unmerged:
    """What an undo stored."""

    customer_id: str
    released: str

    def as_json(self) -> dict[str, Any]:
        """The answer of every door."""
        return {"customer_id": self.customer_id, "released": self.released, "applied": True}


def _current(conn: Connection) -> None:
    catch_up(conn, [registry.get(n) for n in (*TABS, "search")])


def _missing(customer_id: str) -> ServiceError:
    return ServiceError(
        Category.NOT_FOUND, f"customer {customer_id!r} does not exist", code="customer_missing"
    )


def _refuse(reason: str, code: str) -> ServiceError:
    return ServiceError(Category.CONFLICT, reason, code=code)


def _check_shape(conn: Connection, request: MergeRequest) -> None:
    """The refusals a merge gets before anything is read further, in one line each
    (the domain makes the same checks when the events are appended)."""
    priority, absorb = request.customer_id, request.absorb
    if not absorb:
        raise ServiceError(Category.USAGE, "name at least one customer to merge in")
    if len(absorb) > MAX_ABSORBED:
        raise ServiceError(Category.USAGE, f"a merge absorbs at most {MAX_ABSORBED} customers")
    for customer_id in (priority, *absorb):
        if not customer_exists(conn, customer_id):
            raise _missing(customer_id)
    if priority in absorb:
        raise _refuse("a customer cannot be merged into itself", "same_customer")
    if len(set(absorb)) < len(absorb):
        raise _refuse("a customer is listed twice", "listed_twice")
    into = merged_into(conn, priority)
    if into is not None:
        raise _refuse(
            f"customer {priority!r} is merged into {into!r}; merge into {into!r} instead",
            "customer_absorbed",
        )
    for customer_id in absorb:
        into = merged_into(conn, customer_id)
        if into is not None:
            raise _refuse(
                f"customer {customer_id!r} is already merged into {into!r}", "already_absorbed"
            )
        held = merge_members(conn, customer_id)[1:]
        if held:
            raise _refuse(
                f"customer {customer_id!r} holds merged customers ({', '.join(held)}); undo "
                "those merges or merge them into the priority customer directly",
                "holds_merged",
            )


def _card(
    conn: Connection, request: MergeRequest
) -> tuple[dict[str, Any], tuple[Conflict, ...], dict[str, Any], dict[str, str]]:
    """The resulting card, the conflicts, and what the event records: the kept
    values of the differing fields and whose they are."""
    everyone = (request.customer_id, *request.absorb)
    cards = {c: card_values(conn, c) for c in everyone}
    fields = sorted({f for card in cards.values() for f in card})
    unknown = sorted(set(request.keep) - set(fields))
    if unknown:
        raise ServiceError(
            Category.USAGE,
            f"keep: no card of this merge has the field {unknown[0]!r}",
            code="keep_unknown",
        )
    for name, owner in request.keep.items():
        if owner not in everyone:
            raise ServiceError(
                Category.USAGE,
                f"keep: customer {owner!r} is not part of this merge ({name})",
                code="keep_outside",
            )
    card: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    kept: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for name in fields:
        values = {c: cards[c].get(name) for c in everyone if cards[c].get(name) is not None}
        distinct = {_same_as(name, v) for v in values.values()}
        if len(distinct) <= 1:
            # The priority's notation of a phone or e-mail all of them share; kept
            # in the event when they write it differently, as the newest write
            # would otherwise win.
            card[name] = values.get(request.customer_id, next(iter(values.values()), None))
            if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
                kept[name] = card[name]
            continue
        conflicts.append(Conflict(name, values))
        owner = request.keep.get(name, request.customer_id)
        if owner not in values:
            raise ServiceError(
                Category.USAGE,
                f"keep: customer {owner!r} has no {name} to keep",
                code="keep_missing",
            )
        card[name] = kept[name] = values[owner]
        owners[name] = owner
    return card, tuple(conflicts), kept, owners


def _same_as(field_name: str, value: Any) -> str:
    """What two card values are compared by: a phone in any notation and an
    e-mail in any case are the same value (ledger.normalise, as the search)."""
    if isinstance(value, str) and field_name == "phone":
        return phone_key(value, default_region())
    if isinstance(value, str) and field_name == "email":
        return email_key(value)
    return json.dumps(value, sort_keys=True)


def _confirmation(conn: Connection, request: MergeRequest) -> str | None:
    """Why the merge needs a confirmation: a customer that shares no phone number
    or e-mail address with the priority customer (None: every one does)."""
    strangers = [c for c in request.absorb if not shared_contacts(conn, request.customer_id, c)]
    if not strangers:
        return None
    return (
        f"{', '.join(strangers)} and {request.customer_id} share no phone number or e-mail "
        "address; confirm the merge if they are one person"
    )


def preview_merge(conn: Connection, request: MergeRequest) -> MergeOutcome:
    """What the merge would do: the resulting card, the items per tab that move,
    the conflicts, and whether it needs a confirmation. Nothing is stored."""
    return _preview(conn, request)[0]


def _preview(
    conn: Connection, request: MergeRequest
) -> tuple[MergeOutcome, dict[str, Any], dict[str, str]]:
    """The preview, and what the `customer.merged` event records (the kept values
    of the differing fields and whose they are), read once for both."""
    with service_errors():
        _current(conn)
        _check_shape(conn, request)
        card, conflicts, kept, owners = _card(conn, request)
        moved = {tab: 0 for tab in TABS}
        for customer_id in request.absorb:
            for tab, count in tab_counts(conn, customer_id).items():
                moved[tab] += count
        why = _confirmation(conn, request)
        names = {c: card_text(conn, c, "name") for c in (request.customer_id, *request.absorb)}
    outcome = MergeOutcome(
        request.customer_id,
        request.absorb,
        card,
        moved,
        conflicts,
        why is not None,
        False,
        why,
        names,
    )
    return outcome, kept, owners


def merge_customers(
    app: LedgerApplication, conn: Connection, policy: RightsPolicy, request: MergeRequest
) -> MergeOutcome:
    """Merge (or, with `dry_run`, preview): CONFLICT with one line for a merge the
    rules refuse or that needs a confirmation it was not given; nothing is stored
    then."""
    _require_right(policy, request.user_id)
    outcome, kept, owners = _preview(conn, request)
    if request.dry_run:
        return outcome
    reason = request.reason.strip()
    if not reason:
        raise ServiceError(Category.USAGE, "give a reason", code="reason_missing")
    if outcome.needs_confirmation and not request.confirm:
        raise _refuse(outcome.why or "confirm the merge", "confirmation_needed")
    with service_errors():
        data = {
            "absorbed": list(request.absorb),
            "reason": reason,
            "keep": owners,
            "card": kept,
            "confirmed": request.confirm,
        }
        _append(
            app,
            policy,
            request,
            [
                (request.customer_id, "customer.merged", data),
                *(
                    (a, "customer.absorbed", {"into": request.customer_id, "reason": reason})
                    for a in request.absorb
                ),
            ],
        )
    return replace(outcome, applied=True)


def undo_window() -> timedelta | None:
    """How long after a merge it can be undone (`LEDGER_UNDO_WINDOW`: `30d`, `12h`,
    `90m`, `45s` or seconds); None: always."""
    text = os.environ.get(UNDO_WINDOW_ENV, "").strip()
    if not text:
        return None
    match = re.fullmatch(r"(\d+)\s*([dhms]?)", text)
    if match is None:
        raise ServiceError(
            Category.USAGE,
            f"{UNDO_WINDOW_ENV}={text!r}: give a duration such as 30d, 12h, 90m or 3600",
        )
    unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "": "seconds"}
    return timedelta(**{unit[match.group(2)]: int(match.group(1))})


def unmerge_customers(
    app: LedgerApplication, conn: Connection, policy: RightsPolicy, request: UnmergeRequest
) -> Unmerged:
    """Undo a merge: afterwards each customer's tabs are what they would be had
    the merge never happened (every event on the tabs of the id it was sent
    under). CONFLICT when the customers are not merged so, or the undo window
    has passed."""
    priority, released = request.customer_id, request.released
    _require_right(policy, request.user_id)
    reason = request.reason.strip()
    if not reason:
        raise ServiceError(Category.USAGE, "give a reason", code="reason_missing")
    window = undo_window()
    with service_errors():
        _current(conn)
        for customer_id in (priority, released):
            if not customer_exists(conn, customer_id):
                raise _missing(customer_id)
        standing = merged_at(conn, released)
        if standing is None or standing[0] != priority:
            raise _refuse(f"customer {released!r} is not merged into {priority!r}", "not_merged")
        when = datetime.fromisoformat(standing[1])
        if window is not None and datetime.now(UTC) - when > window:
            raise _refuse(
                f"the merge of {released!r} into {priority!r} ({standing[1]}) is older than "
                f"the undo window ({UNDO_WINDOW_ENV})",
                "undo_window_passed",
            )
        _append(
            app,
            policy,
            request,
            [
                (priority, "customer.unmerged", {"released": released, "reason": reason}),
                (released, "customer.released", {"from_customer_id": priority, "reason": reason}),
            ],
        )
    return Unmerged(priority, released)


def _require_right(policy: RightsPolicy, user_id: str) -> None:
    """The rights policy's word, before any preview: the domain checks it again."""
    if not policy.allows(user_id, MERGE_RIGHT):
        raise ServiceError(
            Category.FORBIDDEN,
            f"user {user_id!r} lacks the right {MERGE_RIGHT}",
            code="right_missing",
        )


def _append(
    app: LedgerApplication,
    policy: RightsPolicy,
    request: MergeRequest | UnmergeRequest,
    events: Sequence[tuple[str, str, dict[str, Any]]],
) -> None:
    """Append a merge's or an undo's events all or nothing, as the acting user. A
    rule refusing them is a CONFLICT: another merge or undo got there first, or
    an erasure."""
    items = user_events(events, user_id=request.user_id, source=request.source)
    report = append_items(app, policy, items)
    if report.rejected:
        raise refusal(report)


def resolve(conn: Connection, customer_id: str) -> str | None:
    """The priority customer a door should show instead of `customer_id` (None:
    `customer_id` is its own card). The doors redirect: the API with 308, the
    page with 303, the CLI with a note on stderr."""
    with service_errors():
        catch_up(conn, [registry.get("merges")])
        return merged_into(conn, customer_id)


@dataclass(frozen=True)
class MergedCustomer:
    """A customer standing merged into a priority customer, as the priority's
    card shows it: its card name, since when, and whether the merge can still
    be undone (`undo_window`)."""

    customer_id: str
    name: str | None
    merged_at: str  # ISO 8601, UTC
    undoable: bool


def merged_customers(conn: Connection, priority: str) -> list[MergedCustomer]:
    """The customers merged into `priority`, by id (none for a customer that
    absorbed no one). A `LEDGER_UNDO_WINDOW` that is no duration leaves every
    merge undoable here: the undo itself says what is wrong with it."""
    now = datetime.now(UTC)
    with service_errors():
        catch_up(conn, [registry.get(n) for n in ("merges", "card")])
        merged = merge_members(conn, priority)[1:]
        window = None
        if merged:
            try:
                window = undo_window()
            except ServiceError:
                window = None
        found = []
        for customer_id in merged:
            standing = merged_at(conn, customer_id)
            if standing is None:
                continue
            when = datetime.fromisoformat(standing[1])
            found.append(
                MergedCustomer(
                    customer_id,
                    card_text(conn, customer_id, "name"),
                    standing[1],
                    window is None or now - when <= window,
                )
            )
    return found


def customer_name(conn: Connection, customer_id: str) -> str | None:
    """A customer's card name (its own, also when it is merged into another), or
    None when its card has none."""
    with service_errors():
        catch_up(conn, [registry.get("card")])
        return card_text(conn, customer_id, "name")
