"""Search: the blind indexes of every customer's card phone, e-mail and name words.

One row per (customer, kind, HMAC): `ledger.keystore.index_key.blind_index` of
the value normalised by `ledger.normalise`, never the value. A card change of
one of these fields replaces that field's rows; `customer.erased` deletes the
customer's rows. The rows depend only on the events, the index key and the
default region, so a rebuild makes the same index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from ledger.keystore.index_key import blind_index
from ledger.keystore.keyring import Keyring
from ledger.normalise import default_region, email_key, name_words, phone_key
from projections.base import Envelope, Projection, Tables, Writer
from projections.tables import Index, TableSpec
from projections.writing import insert_rows

SEARCH_INDEX = TableSpec(
    name="rm_customer_index",
    columns=(("hmac", "text"), ("kind", "text"), ("customer_id", "text")),
    indexes=(
        # A lookup is one range of this index, in customer id order (the paging key).
        Index("by_value", ("hmac", "customer_id"), unique=True),
        Index("by_customer", ("customer_id", "kind")),
    ),
)

# The card fields indexed, each its own kind.
KINDS = ("phone", "email", "name")


class IndexEntries:
    """The blind indexes of normalised values, under the ledger's index key."""

    def __init__(self, key: bytes, region: str) -> None:
        self.key = key
        self.region = region

    def digits(self, digits: str) -> list[str]:
        """The HMAC of a phone number kept as its digits only (one that did not parse)."""
        return [blind_index(self.key, "phone", digits)] if digits else []

    def of(self, kind: str, value: Any) -> list[str]:
        """The HMACs a card field's value is found by (none for a non-text value)."""
        if not isinstance(value, str) or not value.strip():
            return []
        if kind == "phone":
            texts = [phone_key(value, self.region)]
        elif kind == "email":
            texts = [email_key(value)]
        else:
            texts = name_words(value)
        return list(dict.fromkeys(blind_index(self.key, kind, t) for t in texts if t))


class _SearchWriter(Writer):
    """Each touched (customer, kind)'s entries, decided in memory; `flush` deletes
    what they replace, then inserts them."""

    def __init__(self, db: Connection, tables: Tables) -> None:
        self.db = db
        self._table = tables[SEARCH_INDEX.name]
        self._entries = IndexEntries(Keyring.for_url(db.url).index_key(), default_region())
        self._rows: dict[tuple[str, str], list[str]] = {}
        self._stale: set[tuple[str, str]] = set()
        self._erased: set[str] = set()

    def add(self, events: Sequence[Envelope]) -> None:
        for e in events:
            customer = e.customer_id
            if e.type == "customer.created":
                for kind in KINDS:
                    self._rows[(customer, kind)] = self._entries.of(kind, e.data["card"].get(kind))
            elif e.type == "customer.card_changed":
                for change in e.data["changes"]:
                    kind = change["field"]
                    if kind in KINDS:
                        self._rows[(customer, kind)] = self._entries.of(kind, change["new"])
                        self._stale.add((customer, kind))
            else:  # customer.erased
                for kind in KINDS:
                    self._rows.pop((customer, kind), None)
                    self._stale.discard((customer, kind))
                self._erased.add(customer)

    def flush(self) -> None:
        table = self._table
        if self._erased:
            self.db.executemany(
                f"DELETE FROM {table} WHERE customer_id = ?", [(c,) for c in self._erased]
            )
        if self._stale:
            self.db.executemany(
                f"DELETE FROM {table} WHERE customer_id = ? AND kind = ?", sorted(self._stale)
            )
        rows = [
            (h, kind, customer) for (customer, kind), hmacs in self._rows.items() for h in hmacs
        ]
        insert_rows(self.db, table, SEARCH_INDEX.column_names, rows)
        self._rows, self._stale, self._erased = {}, set(), set()


class SearchProjection(Projection):
    """The customer search's read model: blind indexes of the card's phone, e-mail
    and name words, following the card and deleted on erasure."""

    name = "search"
    tab = False
    tables = (SEARCH_INDEX,)
    types = frozenset({"customer.created", "customer.card_changed", "customer.erased"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _SearchWriter(db, tables)


# How many entries of a word are counted at most to pick the rarest to start from.
_COUNT_CAP = 1000


def customers_matching(
    conn: Connection, hmacs: Sequence[str], after: str | None, limit: int
) -> list[str]:
    """Up to `limit` customer ids (ascending, after `after`) with an entry for every
    HMAC in `hmacs`: one index range scan, the rarest HMAC leading."""
    if not hmacs:
        return []
    table = SEARCH_INDEX.name
    ordered = list(hmacs)
    if len(ordered) > 1:
        ordered.sort(key=lambda h: _count(conn, h))
    lead, *rest = ordered
    exists = "".join(
        f" AND EXISTS (SELECT 1 FROM {table} o WHERE o.hmac = ? AND o.customer_id = e.customer_id)"
        for _ in rest
    )
    after_clause = " AND e.customer_id > ?" if after is not None else ""
    params: list[Any] = [lead, *([after] if after is not None else []), *rest, limit]
    rows = conn.fetchall(
        f"SELECT e.customer_id FROM {table} e WHERE e.hmac = ?{after_clause}{exists} "
        "ORDER BY e.customer_id LIMIT ?",
        params,
    )
    return [str(r[0]) for r in rows]


def _count(conn: Connection, hmac: str) -> int:
    row = conn.fetchone(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {SEARCH_INDEX.name} WHERE hmac = ? LIMIT ?) c",
        (hmac, _COUNT_CAP),
    )
    return 0 if row is None else int(row[0])


def query_entries(conn: Connection) -> IndexEntries:
    """The blind indexes a query is compared by: the ledger's index key and the
    default region, as the writer uses them."""
    return IndexEntries(Keyring.for_url(conn.url).index_key(), default_region())
