"""Duplicates: the standing "not a duplicate" marks, and the pairs of customers the
search's blind indexes (projections.search) say share a phone or an e-mail.

`rm_not_duplicates` holds one row per standing mark, (customer, other customer),
as `customer.not_duplicate` recorded it on the customer's stream; a withdrawal
deletes it. A pair is marked when either side's mark stands. Customer ids only:
no value of a card is kept here, and the pairs are found by comparing HMACs,
never values.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.search import SEARCH_INDEX
from projections.tables import TableSpec

NOT_DUPLICATES = TableSpec(
    name="rm_not_duplicates",
    columns=(("customer_id", "text"), ("other_customer_id", "text")),
    key=("customer_id", "other_customer_id"),
)

# The card fields a duplicate is found by.
DUPLICATE_KINDS = ("phone", "email")


class _MarksWriter(Writer):
    def __init__(self, db: Connection, tables: Tables) -> None:
        self.db = db
        self._table = tables[NOT_DUPLICATES.name]
        # The last word per (customer, other) since the last flush: standing or not.
        self._standing: dict[tuple[str, str], bool] = {}

    def add(self, events: Sequence[Envelope]) -> None:
        for e in events:
            if e.type == "customer.erased":
                self._standing = {k: v for k, v in self._standing.items() if e.customer_id not in k}
                self.db.execute(
                    f"DELETE FROM {self._table} WHERE customer_id = ? OR other_customer_id = ?",
                    (e.customer_id, e.customer_id),
                )
                continue
            pair = (e.customer_id, str(e.data["other_customer_id"]))
            self._standing[pair] = not e.data.get("withdrawn", False)

    def flush(self) -> None:
        standing, self._standing = self._standing, {}
        self.db.executemany(
            f"INSERT INTO {self._table} (customer_id, other_customer_id) VALUES (?, ?) "
            "ON CONFLICT (customer_id, other_customer_id) DO NOTHING",
            [pair for pair, on in standing.items() if on],
        )
        self.db.executemany(
            f"DELETE FROM {self._table} WHERE customer_id = ? AND other_customer_id = ?",
            [pair for pair, on in standing.items() if not on],
        )


class DuplicatesProjection(Projection):
    """The standing "not a duplicate" marks (the duplicates list leaves these pairs
    out); an erased customer's marks go with it."""

    name = "duplicates"
    tab = False
    tables = (NOT_DUPLICATES,)
    types = frozenset({"customer.not_duplicate", "customer.erased"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _MarksWriter(db, tables)


# How many customers sharing one value are listed at most (a shared office
# number is a duplicate of no one in particular).
MAX_SHARING = 100


def shared_with(conn: Connection, customer_id: str) -> list[tuple[str, str, str]]:
    """(other customer, kind, HMAC) for each phone or e-mail blind index the
    customer shares with another customer, marked pairs left out."""
    table, marks = SEARCH_INDEX.name, NOT_DUPLICATES.name
    rows = conn.fetchall(
        f"SELECT o.customer_id, m.kind, m.hmac FROM {table} m "
        f"JOIN {table} o ON o.hmac = m.hmac AND o.customer_id <> m.customer_id "
        "WHERE m.customer_id = ? AND m.kind IN ('phone', 'email') "
        f"AND NOT EXISTS (SELECT 1 FROM {marks} n WHERE "
        "(n.customer_id = m.customer_id AND n.other_customer_id = o.customer_id) OR "
        "(n.customer_id = o.customer_id AND n.other_customer_id = m.customer_id)) "
        "ORDER BY o.customer_id, m.kind LIMIT ?",
        (customer_id, MAX_SHARING * len(DUPLICATE_KINDS)),
    )
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def marked_with(conn: Connection, customer_ids: Sequence[str]) -> set[str]:
    """The customers marked "not a duplicate" of any of `customer_ids`."""
    if not customer_ids:
        return set()
    marks, holes = NOT_DUPLICATES.name, ", ".join("?" * len(customer_ids))
    rows = conn.fetchall(
        f"SELECT other_customer_id FROM {marks} WHERE customer_id IN ({holes}) "
        f"UNION SELECT customer_id FROM {marks} WHERE other_customer_id IN ({holes})",
        (*customer_ids, *customer_ids),
    )
    return {str(r[0]) for r in rows}


def shared_pairs(conn: Connection, limit: int) -> list[tuple[str, str, str, str]]:
    """Up to `limit` (customer, other customer, kind, HMAC) with customer < other,
    for every phone or e-mail blind index two customers share, marked pairs left
    out, in customer id order."""
    table, marks = SEARCH_INDEX.name, NOT_DUPLICATES.name
    rows = conn.fetchall(
        f"SELECT a.customer_id, b.customer_id, a.kind, a.hmac FROM {table} a "
        f"JOIN {table} b ON b.hmac = a.hmac AND b.customer_id > a.customer_id "
        "WHERE a.kind IN ('phone', 'email') "
        f"AND NOT EXISTS (SELECT 1 FROM {marks} n WHERE "
        "(n.customer_id = a.customer_id AND n.other_customer_id = b.customer_id) OR "
        "(n.customer_id = b.customer_id AND n.other_customer_id = a.customer_id)) "
        "ORDER BY a.customer_id, b.customer_id, a.kind LIMIT ?",
        (limit,),
    )
    return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def standing_mark(conn: Connection, customer_id: str, other_customer_id: str) -> str | None:
    """The customer on whose stream a standing mark of the pair is recorded (None:
    the pair is not marked)."""
    row = conn.fetchone(
        f"SELECT customer_id FROM {NOT_DUPLICATES.name} WHERE "
        "(customer_id = ? AND other_customer_id = ?) OR "
        "(customer_id = ? AND other_customer_id = ?) ORDER BY customer_id LIMIT 1",
        (customer_id, other_customer_id, other_customer_id, customer_id),
    )
    return None if row is None else str(row[0])


def shared_contacts(conn: Connection, customer_id: str, other_customer_id: str) -> list[str]:
    """The kinds (phone, email) of the blind indexes two customers share."""
    table = SEARCH_INDEX.name
    rows = conn.fetchall(
        f"SELECT DISTINCT a.kind FROM {table} a JOIN {table} b ON b.hmac = a.hmac "
        "WHERE a.customer_id = ? AND b.customer_id = ? AND a.kind IN ('phone', 'email') "
        "ORDER BY a.kind",
        (customer_id, other_customer_id),
    )
    return [str(r[0]) for r in rows]
