"""Chats: one row per messenger dialogue with its status and message count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.tables import Index, TableSpec
from projections.writing import EntityWriter

CHATS = TableSpec(
    name="rm_chats",
    columns=(
        ("dialog_id", "text"),
        ("customer_id", "text"),
        ("started_us", "int"),
        ("position", "int"),
        ("started_at", "text"),
        ("status", "text"),
        ("message_count", "int"),
        ("channel", "text"),
        ("url", "text"),
    ),
    key=("dialog_id",),
    indexes=(Index("by_customer", ("customer_id", "started_us", "position")),),
)


class _ChatsWriter(EntityWriter):
    def __init__(self, db: Connection, tables: Tables) -> None:
        super().__init__(db, tables[CHATS.name], CHATS.column_names, "dialog_id")

    def add(self, events: Sequence[Envelope]) -> None:
        self.load_referenced(events)
        for e in events:
            d, kind = e.data, e.type
            if kind == "chat.started":
                self.born(
                    {
                        "dialog_id": d["dialog_id"],
                        "customer_id": e.customer_id,
                        "started_us": e.occurred_us,
                        "position": e.position,
                        "started_at": e.occurred_at,
                        "status": "new",
                        "message_count": 0,
                        "channel": d["channel"],
                        "url": d.get("url"),
                    }
                )
                continue
            row = self.get(d["dialog_id"])
            if row is None:  # the write model never lets this happen; stay robust
                continue
            if kind == "chat.message":
                row["message_count"] += 1
            elif kind == "chat.status_changed":
                row["status"] = d["status"]


class ChatsProjection(Projection):
    """The chats tab's read model: a row per dialogue, its status and message count kept
    up to date by the dialogue's later events."""

    name = "chats"
    tables = (CHATS,)
    types = frozenset({"chat.started", "chat.message", "chat.status_changed"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _ChatsWriter(db, tables)


ROWS = f"FROM {CHATS.name} WHERE customer_id = ?"
PAGED = PagedQuery(
    "chats",
    "started_us, position, dialog_id, started_at, status, message_count, channel, url",
    ROWS,
    ("started_us", "position"),
)


def chats_tab(conn: Connection, customer_id: str, page: Page = FIRST_PAGE) -> dict[str, Any]:
    """One page of the customer's dialogues, newest first."""
    rows, next_cursor = PAGED.fetch(conn, customer_id, page)
    items = [
        {
            "dialog_id": dialog_id,
            "started_at": started_at,
            "status": status,
            "message_count": message_count,
            "channel": channel,
            "url": url,
        }
        for dialog_id, started_at, status, message_count, channel, url in rows
    ]
    return {"customer_id": customer_id, "tab": "chats", "items": items, "next_cursor": next_cursor}
