"""Helpers for the audit tests: appending through the real service, running the
real CLI, and tampering with the events table the way a database owner could."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from cli.main import ledger
from ledger.chain import chain_hash
from ledger.config import parse_database_url
from tests.factories import event

MARIA = {"kind": "user", "id": "u-1", "name": "Maria"}
IVAN = {"kind": "user", "id": "u-2", "name": "Ivan"}
MAILER = {"kind": "integration", "id": "mail-gw"}


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(ledger, ["--db", url, *args])


def customer_story() -> list[dict[str, Any]]:
    """Two customers whose events interleave, with every audited subject kind."""
    return [
        event(
            "customer.created",
            "c-1",
            {"card": {"name": "Anna"}},
            occurred_at="2026-10-01T08:00:00Z",
            actor=MARIA,
        ),
        event(
            "customer.created",
            "c-2",
            {"card": {"name": "Bob"}},
            occurred_at="2026-10-01T08:30:00Z",
            actor=MARIA,
        ),
        event(
            "order.created",
            "c-1",
            {"order_id": "o-1", "status": "new", "total": "10.00"},
            occurred_at="2026-10-01T09:00:00+02:00",
            actor=MARIA,
        ),
        event(
            "order.created",
            "c-2",
            {"order_id": "o-2", "status": "new"},
            occurred_at="2026-10-01T09:10:00Z",
            actor=MARIA,
        ),
        event(
            "order.changed",
            "c-1",
            {
                "order_id": "o-1",
                "changes": [
                    {"field": "status", "old": "new", "new": "paid"},
                    {"field": "total", "old": "10.00", "new": "12.50"},
                ],
            },
            occurred_at="2026-10-02T10:00:00Z",
            actor=IVAN,
            source="api",
        ),
        event(
            "order.changed",
            "c-2",
            {"order_id": "o-2", "changes": [{"field": "status", "old": "new", "new": "cancelled"}]},
            occurred_at="2026-10-02T11:00:00Z",
            actor=MARIA,
        ),
        event(
            "task.created",
            "c-1",
            {"task_id": "t-1", "title": "Call back"},
            occurred_at="2026-10-03T09:00:00Z",
            actor=MARIA,
        ),
        event(
            "task.edited",
            "c-1",
            {
                "task_id": "t-1",
                "changes": [{"field": "title", "old": "Call back", "new": "Call back today"}],
            },
            occurred_at="2026-10-03T09:05:00Z",
            actor=IVAN,
        ),
        event(
            "chat.started",
            "c-1",
            {"dialog_id": "d-1", "channel": "telegram"},
            occurred_at="2026-10-04T12:00:00Z",
            actor=MAILER,
            source="telegram",
        ),
        event(
            "chat.status_changed",
            "c-1",
            {"dialog_id": "d-1", "status": "closed"},
            occurred_at="2026-10-04T12:30:00Z",
            actor=IVAN,
        ),
        event(
            "email.sent",
            "c-1",
            {"message_id": "m-1", "subject": "Your order"},
            occurred_at="2026-10-05T07:00:00Z",
            actor=MAILER,
            source="mail-gateway",
        ),
        event(
            "email.opened",
            "c-1",
            {"message_id": "m-1"},
            occurred_at="2026-10-05T07:30:00Z",
            actor=MAILER,
            source="mail-gateway",
        ),
        event(
            "order.changed",
            "c-1",
            {"order_id": "o-1", "changes": [{"field": "status", "old": "paid", "new": "shipped"}]},
            occurred_at="2026-10-06T10:00:00Z",
            actor=MARIA,
        ),
    ]


def notes(customer: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    created = [event("customer.created", customer, {"card": {}})] if start == 0 else []
    return created + [
        event("note.added", customer, {"note_id": f"{customer}-n{i}", "text": f"note {i}"})
        for i in range(start, start + count)
    ]


HASHED = (
    "notification_id, originator_id, originator_version, topic, state, "
    "event_id, customer_id, subject, chain_hash"
)


class Owner:
    """Raw SQL on the events table as its owner, immutability triggers switched off:
    what someone with the database's keys could do, and `verify` must catch."""

    def __init__(self, url: str) -> None:
        self.db = parse_database_url(url)
        self.kind = self.db.kind
        self._raw: Any
        if self.kind == "sqlite":
            self._raw = sqlite3.connect(self.db.path, isolation_level=None)
            for trigger in ("ledger_events_no_update", "ledger_events_no_delete"):
                self._raw.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        else:
            self._raw = psycopg.connect(
                self.db.conninfo(), autocommit=True, options=f"-c search_path={self.db.schema}"
            )
            self._raw.execute("ALTER TABLE ledger_events DISABLE TRIGGER ALL")

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "postgresql":
            statement = statement.replace("?", "%s")
        cursor = self._raw.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []

    def row(self, position: int) -> tuple[Any, ...]:
        rows = self.execute(
            f"SELECT {HASHED} FROM ledger_events WHERE notification_id = ?", (position,)
        )
        assert rows, f"no row at position {position}"
        return rows[0]

    def rows(self) -> list[tuple[Any, ...]]:
        return self.execute(f"SELECT {HASHED} FROM ledger_events ORDER BY notification_id")

    def hash_of(self, position: int) -> str:
        return str(self.row(position)[-1])

    def set_state(self, position: int, state: bytes) -> None:
        self.execute(
            "UPDATE ledger_events SET state = ? WHERE notification_id = ?", (state, position)
        )

    def rechain_from(self, position: int) -> None:
        """Recompute and store every hash from `position` on: a forger covering tracks."""
        rows = self.rows()
        previous = "0" * 64
        for r in rows:
            if r[0] >= position:
                h = chain_hash(previous, r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7])
                self.execute(
                    "UPDATE ledger_events SET chain_hash = ? WHERE notification_id = ?", (h, r[0])
                )
                previous = h
            else:
                previous = r[-1]

    def close(self) -> None:
        self._raw.close()


@contextmanager
def owner(url: str) -> Iterator[Owner]:
    o = Owner(url)
    try:
        yield o
    finally:
        o.close()
