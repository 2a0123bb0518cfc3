"""Emails: one row per email with what the customer did with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.sealing import Sealer
from projections.tables import Index, TableSpec
from projections.writing import EntityWriter

EMAILS = TableSpec(
    name="rm_emails",
    columns=(
        ("message_id", "text"),
        ("customer_id", "text"),
        ("sent_us", "int"),
        ("position", "int"),
        ("sent_at", "text"),
        ("subject", "text"),
        ("delivered", "int"),
        ("opened_at", "text"),
        ("opened_us", "int"),
        ("open_count", "int"),
        ("clicks", "int"),
    ),
    key=("message_id",),
    indexes=(Index("by_customer", ("customer_id", "sent_us", "position")),),
)


class _EmailsWriter(EntityWriter):
    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        super().__init__(db, tables[EMAILS.name], EMAILS.column_names, "message_id")
        self._sealer = Sealer(keys)

    def add(self, events: Sequence[Envelope]) -> None:
        self.load_referenced(events)
        for e in events:
            d, kind = e.data, e.type
            if kind == "email.sent":
                self.born(
                    {
                        "message_id": d["message_id"],
                        "customer_id": e.customer_id,
                        "sent_us": e.occurred_us,
                        "position": e.position,
                        "sent_at": e.occurred_at,
                        "subject": self._sealer.text(e.customer_id, d["subject"]),
                        "delivered": 0,
                        "opened_at": None,
                        "opened_us": None,
                        "open_count": 0,
                        "clicks": 0,
                    }
                )
                continue
            row = self.get(d["message_id"])
            if row is None:  # the write model never lets this happen; stay robust
                continue
            if kind == "email.delivered":
                row["delivered"] = 1
            elif kind == "email.opened":
                row["open_count"] += 1
                # The first open is the earliest, whatever order the opens arrive in.
                if row["opened_us"] is None or e.occurred_us < row["opened_us"]:
                    row["opened_us"], row["opened_at"] = e.occurred_us, e.occurred_at
            elif kind == "email.clicked":
                row["clicks"] += 1


class EmailsProjection(Projection):
    """The emails tab's read model: a row per email sent, with delivery, first open,
    open and click counts; the subject is sealed as personal."""

    name = "emails"
    tables = (EMAILS,)
    # `email.bounced` shows on the timeline; the tab has no field for it.
    types = frozenset({"email.sent", "email.delivered", "email.opened", "email.clicked"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _EmailsWriter(db, tables, keys)


ROWS = f"FROM {EMAILS.name} WHERE customer_id = ?"
_COLUMNS = "message_id, subject, sent_at, delivered, opened_at, open_count, clicks"
PAGED = PagedQuery("emails", f"sent_us, position, {_COLUMNS}", ROWS, ("sent_us", "position"))


def emails_tab(conn: Connection, customer_id: str, page: Page = FIRST_PAGE) -> dict[str, Any]:
    """One page of the customer's emails, newest first, and the newest email whichever
    page this is (`last_email`)."""
    rows, next_cursor = PAGED.fetch(conn, customer_id, page)
    items = [
        {
            "message_id": message_id,
            "subject": subject,
            "sent_at": sent_at,
            "delivered": bool(delivered),
            "opened_at": opened_at,
            "open_count": open_count,
            "clicks": clicks,
        }
        for message_id, subject, sent_at, delivered, opened_at, open_count, clicks in rows
    ]
    # The newest email whichever page this is: the first page's first item.
    if page.cursor is None:
        last = (items[0]["message_id"], items[0]["open_count"]) if items else None
    else:
        newest, _ = PAGED.fetch(conn, customer_id, Page(limit=1))
        last = (newest[0][0], newest[0][5]) if newest else None
    return {
        "customer_id": customer_id,
        "tab": "emails",
        "items": items,
        "next_cursor": next_cursor,
        "last_email": {"message_id": last[0], "opened": last[1] > 0} if last else None,
    }
