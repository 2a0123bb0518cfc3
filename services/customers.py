"""Customers: finding them, erasure and access export (docs/privacy.md). The CLI
(`ledger customers`) and the HTTP API call these."""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from ledger.application import LedgerApplication
from ledger.audit.history import Selector, iter_history
from ledger.db import Connection
from ledger.input import InputItem
from ledger.keystore.keyring import Keyring
from ledger.normalise import looks_like_email, looks_like_phone
from ledger.rights import RightsPolicy
from projections import registry
from projections.card import card_text
from projections.merges import members, merged_into
from projections.runner import catch_up_live
from projections.search import IndexEntries, customers_matching, query_entries
from projections.tabs import TABS, TabRequest, customer_exists, read_tab
from services.appending import append_items, now_text
from services.errors import Category, ServiceError, service_errors
from services.freshness import catch_up


@dataclass(frozen=True)
class Erasure:
    """An erasure's outcome: whether this call erased the customer, and the
    position of the customer.erased event it stored (None when it stored none)."""

    customer_id: str
    erased: bool  # False: it already was (a repeated erasure is a no-op)
    position: int | None


def erase_customer(
    app: LedgerApplication,
    policy: RightsPolicy,
    customer_id: str,
    reason: str,
    requested_by: str,
) -> Erasure:
    """Append customer.erased; its key is destroyed in the same transaction
    (ledger.appending), so from the commit on every reader shows it erased. A
    customer of a standing merge is one person with its merge: the priority
    customer and every customer merged into it are erased together."""
    with service_errors():
        customer = app.customer(customer_id)
        if not customer.exists:
            raise ServiceError(Category.NOT_FOUND, f"customer {customer_id!r} does not exist")
        root = customer if customer.merged_into is None else app.customer(customer.merged_into)
        group = [root, *(app.customer(c) for c in sorted(root.absorbed))]
        if all(c.erased for c in group):
            return Erasure(customer_id, False, None)
        now = now_text()
        items = [
            InputItem(
                i + 1,
                json.dumps(
                    {
                        "type": "customer.erased",
                        "customer_id": c.customer_id,
                        "occurred_at": now,
                        "actor": {"kind": "user", "id": requested_by},
                        "data": {"reason": reason, "requested_by": requested_by},
                    }
                ),
            )
            for i, c in enumerate(c for c in group if not c.erased)
        ]
        report = append_items(app, policy, items)
        if not report.ok:
            raise ServiceError(Category.REJECTED, str(report.rejected[0]))
        # SQLite: the key's old page leaves the WAL too.
        Keyring.for_url(app.url).checkpoint()
    return Erasure(customer_id, report.appended > 0, report.last_position)


def export_customer(conn: Connection, customer_id: str) -> dict[str, Any]:
    """An access request's answer: every event of the customer with personal
    values decrypted, and the current state of every tab. A priority customer's
    answer holds the events of the customers merged into it too, in position
    order: they are one person, and its tabs show them."""
    with service_errors():
        catch_up_live(conn, [registry.get(name) for name in registry.NAMES])
        found = [
            e
            for c in members(conn, customer_id)
            for e in iter_history(conn, Selector("customer", c))
        ]
        events = [e.as_json() for e in sorted(found, key=lambda e: e.position)]
        if not events:
            raise ServiceError(Category.NOT_FOUND, f"customer {customer_id!r} has no events")
        tabs = {
            tab: read_tab(conn, TabRequest(customer_id, tab)) for tab in TABS if tab != "timeline"
        }
    return {
        "customer_id": customer_id,
        "exported_at": now_text(),
        "events": events,
        "summary": tabs,
    }


# What a search matched a customer by, the first that applies.
MATCHED = ("id", "phone", "email", "name")
SEARCH_LIMIT = 20  # results per page unless asked
SEARCH_MAX_LIMIT = 100
_CURSOR_VERSION = 1


@dataclass(frozen=True)
class CustomerMatch:
    """A customer the customer search found, and what of it the query matched."""

    customer_id: str
    name: str | None  # the card's current name
    matched: str = "id"  # one of MATCHED


@dataclass(frozen=True)
class CustomerSearch:
    """One page of a customer search: the matches in customer id order, and the
    cursor of the next page (None on the last)."""

    query: str
    items: tuple[CustomerMatch, ...]
    next_cursor: str | None
    limit: int

    def as_json(self) -> dict[str, Any]:
        """The JSON answer every door gives (`ledger customers find --format json`,
        `GET /v1/customers?q=`)."""
        return {
            "query": self.query,
            "items": [
                {"customer_id": m.customer_id, "name": m.name, "matched": m.matched}
                for m in self.items
            ],
            "next_cursor": self.next_cursor,
            "limit": self.limit,
        }


# What can be a customer id at all: the event contracts' bounds, and no control
# characters (the HTTP API's rule for ids; a NUL would reach the database).
_SEARCHABLE_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_MAX_QUERY = 256


def find_customers(
    conn: Connection,
    query: str,
    *,
    limit: int = SEARCH_LIMIT,
    cursor: str | None = None,
) -> CustomerSearch:
    """The customers a search for `query` finds, one page in customer id order: the
    one whose id it is exactly, and those whose card phone (any notation; national
    numbers in the default region, `ledger.normalise`), e-mail (any case) or name (all
    the query's words) it is, compared by blind index (projections.search)."""
    text = query.strip()
    if not 1 <= limit <= SEARCH_MAX_LIMIT:
        raise ServiceError(Category.USAGE, f"limit must be between 1 and {SEARCH_MAX_LIMIT}")
    if len(text) > _MAX_QUERY or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ServiceError(
            Category.USAGE,
            f"a search is up to {_MAX_QUERY} characters of text without control characters",
        )
    after = _decode_cursor(text, cursor) if cursor else None
    if not text:
        return CustomerSearch(text, (), None, limit)
    with service_errors():
        catch_up(conn, [registry.get("timeline"), registry.get("card"), registry.get("search")])
        hits: dict[str, str] = {}
        if _SEARCHABLE_ID.fullmatch(text) and customer_exists(conn, text):
            hits[text] = "id"
        entries = query_entries(conn)
        for kind, hmacs in _lookups(entries, text):
            for customer_id in customers_matching(conn, hmacs, after, limit + 1):
                hits.setdefault(customer_id, kind)
        # A customer merged into another is found as the one it is merged into
        # (listed once, on the page its own id falls on).
        found: dict[str, str] = {}
        for customer_id, kind in hits.items():
            shown = merged_into(conn, customer_id) or customer_id
            if after is None or shown > after:
                found.setdefault(shown, kind)
        ids = sorted(found)[: limit + 1]
        page = ids[:limit]
        items = tuple(CustomerMatch(c, card_text(conn, c, "name"), found[c]) for c in page)
    next_cursor = _encode_cursor(text, page[-1]) if len(ids) > limit else None
    return CustomerSearch(text, items, next_cursor, limit)


def _lookups(entries: IndexEntries, text: str) -> list[tuple[str, list[str]]]:
    """What a query is looked up as: a phone number, an e-mail address, or name words
    (every word must match)."""
    if looks_like_phone(text):
        # Also as its digits: a card number that did not parse was indexed so.
        digits = "".join(c for c in text if c.isdigit())
        return [("phone", entries.of("phone", text)), ("phone", entries.digits(digits))]
    if looks_like_email(text):
        return [("email", entries.of("email", text))]
    return [("name", entries.of("name", text))]


def _tag(text: str) -> int:
    return zlib.crc32(text.encode())


def _encode_cursor(text: str, after: str) -> str:
    raw = json.dumps([_CURSOR_VERSION, after, _tag(text)], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str, cursor: str) -> str:
    """The customer id the next page starts after; refused unless this search's."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError):
        parts = None
    if (
        not isinstance(parts, list)
        or len(parts) != 3
        or parts[0] != _CURSOR_VERSION
        or not isinstance(parts[1], str)
        or parts[2] != _tag(text)
    ):
        raise ServiceError(Category.USAGE, "bad cursor: not one this search handed out")
    return parts[1]
