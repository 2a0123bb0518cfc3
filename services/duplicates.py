"""Duplicates: the customers that share a normalised phone number or e-mail address
with a customer (or every such group), compared by the search's blind indexes, and
the "not a duplicate" marks that take a pair off the list (`ledger customers
duplicates`, `ledger customers not-duplicates`, `GET /v1/customers/{id}/duplicates`,
`POST /v1/customers/{id}/not-duplicates`, the card page's duplicates list)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.db import Connection
from ledger.normalise import default_region, email_key, phone_key
from ledger.rights import RightsPolicy
from projections import registry
from projections.card import card_text
from projections.duplicates import marked_with, shared_pairs, shared_with
from projections.merges import members, merged_into
from projections.tabs import customer_exists
from services.appending import append_items, refusal, user_events
from services.errors import Category, ServiceError, service_errors
from services.freshness import catch_up

if TYPE_CHECKING:
    from ledger.application import LedgerApplication

# Pairs read at most for the list of every group (`ledger customers duplicates`).
MAX_PAIRS = 10_000
GROUPS_LIMIT = 50
GROUPS_MAX_LIMIT = 1000
_MASK = "\u2022\u2022\u2022\u2022"  # ••••


@dataclass(frozen=True)
class Reason:
    """Why two customers look like one: the card field they share, its value masked."""

    field: str  # phone or email
    value: str

    def as_json(self) -> dict[str, str]:
        """The reason as every door answers it."""
        return {"field": self.field, "value": self.value}


@dataclass(frozen=True)
class Candidate:
    """A possible duplicate of a customer: its id, card name and the shared values."""

    customer_id: str
    name: str | None
    reasons: tuple[Reason, ...]

    def as_json(self) -> dict[str, Any]:
        """The candidate as every door answers it."""
        return {
            "customer_id": self.customer_id,
            "name": self.name,
            "reasons": [r.as_json() for r in self.reasons],
        }


@dataclass(frozen=True)
class Duplicates:
    """One customer's possible duplicates, in customer id order."""

    customer_id: str
    items: tuple[Candidate, ...]

    def as_json(self) -> dict[str, Any]:
        """`ledger customers duplicates ID --format json`, `GET .../duplicates`."""
        return {"customer_id": self.customer_id, "items": [c.as_json() for c in self.items]}


def mask_phone(value: str) -> str:
    """A phone number as the duplicates list shows it: its country and area code
    and its last two digits (`+49 30 •••• 67`)."""
    import phonenumbers

    key = phone_key(value, default_region())
    if key.startswith("+"):
        number = phonenumbers.parse(key, None)
        text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        parts = text.split()
        head = parts[:2] if len(parts) > 2 else parts[:1]
        return " ".join([*head, _MASK, key[-2:]])
    return f"{_MASK} {key[-2:]}" if len(key) > 2 else _MASK


def mask_email(value: str) -> str:
    """An e-mail address as the duplicates list shows it: the first letter of the
    mailbox and the domain (`m••••@example.com`)."""
    local, _, domain = email_key(value).rpartition("@")
    return f"{local[:1]}{_MASK}@{domain}" if local else _MASK


def _reason(conn: Connection, customer_id: str, kind: str) -> Reason:
    value = card_text(conn, customer_id, kind)
    if value is None:
        return Reason(kind, _MASK)
    return Reason(kind, mask_phone(value) if kind == "phone" else mask_email(value))


def _current(conn: Connection) -> None:
    catch_up(
        conn,
        [registry.get(n) for n in ("timeline", "card", "search", "duplicates")],
    )


def find_duplicates(conn: Connection, customer_id: str) -> Duplicates:
    """The customers sharing a normalised phone or e-mail with `customer_id`, with
    each shared field masked, pairs marked "not a duplicate" left out; NOT_FOUND
    for a customer without events."""
    with service_errors():
        _current(conn)
        if not customer_exists(conn, customer_id):
            raise ServiceError(
                Category.NOT_FOUND,
                f"customer {customer_id!r} does not exist",
                code="customer_missing",
            )
        # Each candidate's shared kinds, each with the card of this merge that
        # holds the shared value (whose value the reason masks).
        kinds: dict[str, dict[str, str]] = {}
        for other, kind, holder in _shared(conn, customer_id):
            kinds.setdefault(other, {})[kind] = holder
        items = tuple(
            Candidate(
                other,
                card_text(conn, other, "name"),
                tuple(_reason(conn, ks[k], k) for k in sorted(ks, key=_field_order)),
            )
            for other, ks in kinds.items()
        )
    return Duplicates(customer_id, items)


def duplicate_count(conn: Connection, customer_id: str) -> int:
    """How many possible duplicates the customer has (the card's notice)."""
    with service_errors():
        _current(conn)
        return len({other for other, _, _ in _shared(conn, customer_id)})


class _Marks:
    """Whether two customers are marked "not a duplicate", each with the
    customers merged into it: a mark between any of one and any of the other
    keeps them apart, as the rules see a merge as one customer."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._members: dict[str, tuple[str, ...]] = {}
        self._marked: dict[str, set[str]] = {}

    def members(self, customer_id: str) -> tuple[str, ...]:
        if customer_id not in self._members:
            self._members[customer_id] = members(self._conn, customer_id)
        return self._members[customer_id]

    def apart(self, a: str, b: str) -> bool:
        if a not in self._marked:
            self._marked[a] = marked_with(self._conn, self.members(a))
        return not self._marked[a].isdisjoint(self.members(b))


def _shared(conn: Connection, customer_id: str) -> list[tuple[str, str, str]]:
    """(other customer, kind, holder) for each phone or e-mail the customer's
    card, or a card merged into it (the holder), shares with another customer,
    that customer shown as the one it is merged into, if any; customers of the
    same merge are one, and so are their marks."""
    marks = _Marks(conn)
    group = marks.members(customer_id)
    found: dict[tuple[str, str], str] = {}
    for member in group:
        for other, kind, _ in shared_with(conn, member):
            shown = merged_into(conn, other) or other
            if shown in group or (shown, kind) in found or marks.apart(customer_id, shown):
                continue
            found[shown, kind] = member
    return sorted((shown, kind, holder) for (shown, kind), holder in found.items())


def _field_order(kind: str) -> int:
    return 0 if kind == "phone" else 1


def duplicate_groups(conn: Connection, *, limit: int = GROUPS_LIMIT) -> dict[str, Any]:
    """Every group of customers linked by shared phones or e-mails (pairs marked
    "not a duplicate" do not link), up to `limit` groups in order of their first
    customer id: `{"groups": [{"customers", "reasons"}], "truncated"}`."""
    if not 1 <= limit <= GROUPS_MAX_LIMIT:
        raise ServiceError(Category.USAGE, f"limit must be between 1 and {GROUPS_MAX_LIMIT}")
    with service_errors():
        _current(conn)
        pairs = shared_pairs(conn, MAX_PAIRS + 1)
        truncated = len(pairs) > MAX_PAIRS
        parent: dict[str, str] = {}

        def root(c: str) -> str:
            while parent.setdefault(c, c) != c:
                parent[c] = parent[parent[c]]
                c = parent[c]
            return c

        # Customers of one merge are one customer (its priority), marks included.
        into = {c: merged_into(conn, c) or c for p in pairs[:MAX_PAIRS] for c in p[:2]}
        marks = _Marks(conn)
        pairs = [
            (into[a], into[b], kind, hmac)
            for a, b, kind, hmac in pairs[:MAX_PAIRS]
            if into[a] != into[b] and not marks.apart(into[a], into[b])
        ]
        for a, b, _, _ in pairs:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        members: dict[str, list[str]] = {}
        for c in sorted(parent):
            members.setdefault(root(c), []).append(c)
        shared: dict[str, dict[tuple[str, str], str]] = {}
        for a, _, kind, hmac in pairs:
            shared.setdefault(root(a), {}).setdefault((kind, hmac), a)
        groups = []
        for first in sorted(members)[:limit]:
            reasons = [
                _reason(conn, holder, kind).as_json()
                for (kind, _), holder in sorted(
                    shared[first].items(), key=lambda kv: (_field_order(kv[0][0]), kv[1])
                )
            ]
            customers = [
                {"customer_id": c, "name": card_text(conn, c, "name")} for c in members[first]
            ]
            groups.append({"customers": customers, "reasons": reasons})
    return {"groups": groups, "truncated": truncated or len(members) > limit}


@dataclass(frozen=True)
class MarkRequest:
    """A user's "not a duplicate" mark of two customers, or its withdrawal."""

    customer_id: str
    other_customer_id: str
    user_id: str  # the acting user, the events' actor
    reason: str
    withdraw: bool = False
    source: str = "ledger"


@dataclass(frozen=True)
class Marked:
    """What a mark request stored: the customers on whose streams it recorded
    `customer.not_duplicate`, and whether the pair is marked now."""

    customer_id: str
    other_customer_id: str
    marked: bool
    recorded_on: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The answer of every door."""
        return {
            "customer_id": self.customer_id,
            "other_customer_id": self.other_customer_id,
            "marked": self.marked,
            "recorded_on": list(self.recorded_on),
        }


def mark_not_duplicate(
    app: LedgerApplication, policy: RightsPolicy, request: MarkRequest
) -> Marked:
    """Record `customer.not_duplicate` on both customers' streams (each names the
    other), in one all-or-nothing append, so each one's audit history and the relay
    carry it; a withdrawal is recorded on each stream whose mark stands. The
    domain checks the rules and the right `customers.merge`."""
    a, b = request.customer_id, request.other_customer_id
    reason = request.reason.strip()
    if not reason:
        raise ServiceError(Category.USAGE, "give a reason", [], code="reason_missing")
    with service_errors():
        first = app.customer(a)
        if not first.exists:
            raise ServiceError(
                Category.NOT_FOUND, f"customer {a!r} does not exist", code="customer_missing"
            )
        second = app.customer(b)
        sides = [(a, b, first.not_duplicates), (b, a, second.not_duplicates)]
        if a == b or not second.exists or second.erased:
            wanted = [(a, b)]  # the domain refuses it and says why
        else:
            wanted = [(c, o) for c, o, marks in sides if (o in marks) == request.withdraw]
            if not wanted:
                wanted = [(a, b)]  # the domain says what stands or does not
        items = user_events(
            [
                (
                    c,
                    "customer.not_duplicate",
                    {"other_customer_id": o, "reason": reason, "withdrawn": request.withdraw},
                )
                for c, o in wanted
            ],
            user_id=request.user_id,
            source=request.source,
        )
        report = append_items(app, policy, items)
    if report.rejected:
        raise refusal(report, conflicts={"mark_exists", "mark_missing", "customer_erased"})
    return Marked(a, b, not request.withdraw, tuple(c for c, _ in wanted))


def marked_pair(conn: Connection, customer_id: str, other_customer_id: str) -> bool:
    """Whether a "not a duplicate" mark of the pair stands (read model)."""
    from projections.duplicates import standing_mark

    with service_errors():
        _current(conn)
        return standing_mark(conn, customer_id, other_customer_id) is not None
