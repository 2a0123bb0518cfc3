"""Pages of a tab: newest first, `limit` items, an opaque cursor for the next page.

A cursor is the sort key of the last item shown (keyset paging), so a page costs
an index range scan of `limit` rows however long the customer's history is, and
items stored after the first page was read never shift later pages. Every tab
sorts by a unique key ending in the event position (the history tabs add the
change's `seq` within the event), so no item is skipped or repeated across pages.

The cursor carries a tag of the tab and customer it was handed out for: given to
another tab or customer it is refused instead of silently starting mid-list.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.db import Connection

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_VERSION = 1
_BIG = 2**63


class BadCursor(ValueError):
    """A cursor this ledger did not hand out for this customer's tab."""


@dataclass(frozen=True)
class Page:
    """Which page of a tab: up to `limit` items after `cursor` (None: the newest)."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")


FIRST_PAGE = Page()


def _tag(tab: str, customer_id: str) -> int:
    # The timeline's tag is the customer's alone: its cursors predate the other
    # tabs' paging and stay valid.
    scope = customer_id if tab == "timeline" else f"{tab}\x00{customer_id}"
    return zlib.crc32(scope.encode())


def encode_cursor(tab: str, customer_id: str, key: tuple[int, ...]) -> str:
    """The cursor of the page after the item with sort key `key`, tagged with the tab
    and customer it is for (see `decode_cursor`)."""
    raw = json.dumps([_VERSION, *key, _tag(tab, customer_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(tab: str, customer_id: str, cursor: str, width: int) -> tuple[int, ...]:
    """The sort key (`width` integers) the next page starts below."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursor("bad cursor: not a cursor this ledger handed out") from None
    if (
        not isinstance(parts, list)
        or len(parts) != width + 2
        or parts[0] != _VERSION
        or not all(type(p) is int and -_BIG <= p < _BIG for p in parts[1:])
        or any(p < 0 for p in parts[2:-1])
    ):
        raise BadCursor("bad cursor: not a cursor this ledger handed out")
    if parts[-1] != _tag(tab, customer_id):
        raise BadCursor(f"bad cursor: it belongs to another customer's {tab} or another tab")
    return tuple(parts[1:-1])


@dataclass(frozen=True)
class PagedQuery:
    """One tab's keyset query: `select` (its columns) and `rows` (its FROM and
    WHERE, with one `?` for the customer) are the tab's own; `key` is its sort key,
    newest first on every column but the last when `ascending_last` (the history
    tabs list one event's changes in order), oldest first on every column when
    `ascending` (a dialogue's messages read in the order they were sent)."""

    tab: str
    select: str
    rows: str
    key: tuple[str, ...]
    ascending_last: bool = False
    ascending: bool = False
    # The `?` of `rows` is a customer (not a dialogue or an order): a priority
    # customer's page folds in the rows of the customers merged into it.
    per_customer: bool = True

    def sql(
        self, customer_id: str, page: Page, members: Sequence[str] = ()
    ) -> tuple[str, list[object]]:
        """The statement for `page` (one row more than the limit: is there a next page?)
        and its parameters; every key column must lead the select list. With
        `members` (the customers whose rows the page shows), one limited range
        scan each, merged by key."""
        where, after_params = "", list[object]()
        if page.cursor is not None:
            after = decode_cursor(self.tab, customer_id, page.cursor, len(self.key))
            if self.ascending:
                columns, marks = ", ".join(self.key), ", ".join("?" * len(self.key))
                where, after_params = f" AND ({columns}) > ({marks})", list[object](after)
            else:
                where, after_params = _below(self.key, after, self.ascending_last)
        order = ", ".join(f"{c} DESC" for c in self.key)
        if self.ascending:
            order = ", ".join(self.key)
        elif self.ascending_last:
            order = order.rsplit(" DESC", 1)[0]
        one = f"SELECT {self.select} {self.rows}{where} ORDER BY {order} LIMIT ?"
        if len(members) <= 1:
            return one, [customer_id, *after_params, page.limit + 1]
        return union_pages(one, order, [[m, *after_params] for m in members], page.limit + 1)

    def fetch(
        self, conn: Connection, customer_id: str, page: Page
    ) -> tuple[list[Sequence[Any]], str | None]:
        """The page's rows without their key columns, and the cursor of the next
        page (None on the last one)."""
        from projections.merges import members

        group = members(conn, customer_id) if self.per_customer else ()
        sql, params = self.sql(customer_id, page, group)
        rows = conn.fetchall(sql, params)
        width = len(self.key)
        cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            cursor = encode_cursor(self.tab, customer_id, tuple(int(v) for v in rows[-1][:width]))
        return [r[width:] for r in rows], cursor


def union_pages(
    one: str, order: str, params: Sequence[Sequence[object]], limit: int
) -> tuple[str, list[object]]:
    """The page of several customers' rows: `one` (a keyset statement ending in
    `ORDER BY order LIMIT ?`) once per customer, each an index range scan of at
    most `limit` rows, merged by the same order. `params` are each customer's,
    before the limit."""
    outer = ", ".join(part.split(".")[-1] for part in order.split(", "))
    parts = [f"SELECT * FROM ({one}) AS m{i}" for i in range(len(params))]
    values: list[object] = []
    for p in params:
        values.extend([*p, limit])
    values.append(limit)
    return f"{' UNION ALL '.join(parts)} ORDER BY {outer} LIMIT ?", values


def _below(
    key: tuple[str, ...], after: tuple[int, ...], ascending_last: bool
) -> tuple[str, list[object]]:
    """The condition "sorts after `after`" on `key`, as a row comparison the index
    can range-scan (both stores compare row values lexicographically)."""
    if not ascending_last:
        columns = ", ".join(key)
        return f" AND ({columns}) < ({', '.join('?' * len(key))})", list(after)
    head, last = key[:-1], key[-1]
    columns = ", ".join(head)
    marks = ", ".join("?" * len(head))
    # Bounded by the first key column so the index range stays a range; the rest
    # of the row comparison picks up where the previous page stopped.
    equal = " AND ".join(f"{c} = ?" for c in head)
    return (
        f" AND {head[0]} <= ? AND (({columns}) < ({marks}) OR ({equal} AND {last} > ?))",
        [after[0], *after[:-1], *after[:-1], after[-1]],
    )
