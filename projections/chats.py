"""Chats: one row per messenger dialogue with its status and message count, and
one row per message, which the dialogue's own view pages through."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.history import actor_json
from projections.merges import members, widen
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.sealing import Sealer
from projections.tables import Index, TableSpec
from projections.writing import EntityWriter, insert_rows

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

# A dialogue's messages, read by dialogue in the order they were sent; the text is
# personal (sealed), the author is the event's actor.
CHAT_MESSAGES = TableSpec(
    name="rm_chat_messages",
    columns=(
        ("position", "int"),
        ("dialog_id", "text"),
        ("sent_us", "int"),
        ("customer_id", "text"),
        ("message_id", "text"),
        ("direction", "text"),
        ("author", "text"),
        ("sent_at", "text"),
        ("text", "text"),
    ),
    rowid="position",
    indexes=(Index("by_dialog", ("dialog_id", "sent_us", "position"), unique=True),),
)


class _ChatsWriter(EntityWriter):
    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        super().__init__(db, tables[CHATS.name], CHATS.column_names, "dialog_id")
        self._messages = tables[CHAT_MESSAGES.name]
        self._sealer = Sealer(keys)
        self.rows: list[tuple[Any, ...]] = []  # the new messages

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
                self.rows.append(
                    (
                        e.position,
                        d["dialog_id"],
                        e.occurred_us,
                        e.customer_id,
                        d["message_id"],
                        d["direction"],
                        actor_json(e.actor),
                        e.occurred_at,
                        self._sealer.text(e.customer_id, d.get("text")),
                    )
                )
            elif kind == "chat.status_changed":
                row["status"] = d["status"]

    def flush(self) -> None:
        insert_rows(self.db, self._messages, CHAT_MESSAGES.column_names, self.rows)
        self.rows = []
        super().flush()


class ChatsProjection(Projection):
    """The chats tab's read model: a row per dialogue, its status and message count kept
    up to date by the dialogue's later events; and a row per message (text sealed)."""

    name = "chats"
    version = 2  # 2: the messages (rm_chat_messages)
    tables = (CHATS, CHAT_MESSAGES)
    types = frozenset({"chat.started", "chat.message", "chat.status_changed"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _ChatsWriter(db, tables, keys)


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


# One dialogue's messages, oldest first; the cursor is tagged with the dialogue.
DIALOGUE_TAB = "dialog"
MESSAGES_PAGED = PagedQuery(
    DIALOGUE_TAB,
    "sent_us, position, message_id, direction, author, sent_at, text",
    f"FROM {CHAT_MESSAGES.name} WHERE dialog_id = ?",
    ("sent_us", "position"),
    ascending=True,
    per_customer=False,
)


def dialogue(
    conn: Connection, customer_id: str, dialog_id: str, page: Page = FIRST_PAGE
) -> dict[str, Any] | None:
    """The customer's dialogue (channel, status, start, message count, the producer's
    url) and one page of its messages in the order they were sent; None when the
    customer has no such dialogue."""
    group = members(conn, customer_id)
    found = conn.fetchone(
        "SELECT started_at, status, message_count, channel, url "
        f"{widen(ROWS, len(group))} AND dialog_id = ?",
        (*group, dialog_id),
    )
    if found is None:
        return None
    started_at, status, message_count, channel, url = found
    rows, next_cursor = MESSAGES_PAGED.fetch(conn, dialog_id, page)
    items = [
        {
            "message_id": message_id,
            "direction": direction,
            "author": json.loads(author),
            "sent_at": sent_at,
            "text": text,
        }
        for message_id, direction, author, sent_at, text in rows
    ]
    return {
        "customer_id": customer_id,
        "dialog_id": dialog_id,
        "channel": channel,
        "status": status,
        "started_at": started_at,
        "message_count": message_count,
        "url": url,
        "items": items,
        "next_cursor": next_cursor,
    }
