"""The timeline ("Previous interactions"): every event of a customer, newest first.

One row per event with what the query filters and sorts on, and the summary.
The envelope itself (`event_id`, `actor`, `data`) is not copied: a page joins
its 50 rows to the events table by position, a primary-key lookup each, and
stored events never change. Copying it would double what a rebuild writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from ledger.kinds import KINDS
from ledger.payloads import payload_classes
from ledger.personal import has_personal
from ledger.reading import states_at
from ledger.summaries import FACTS, learn, summarize
from ledger.upcasting import upcast_document
from projections.base import Envelope, EveryEventType, Projection, Tables, Writer
from projections.clock import iso, micros
from projections.merges import members, widen
from projections.paging import MAX_LIMIT, decode_cursor, encode_cursor, union_pages
from projections.sealing import Sealer, reveal_cell
from projections.tables import Index, TableSpec
from projections.writing import AppendWriter, EntityWriter

TIMELINE = TableSpec(
    name="rm_timeline",
    columns=(
        ("position", "int"),
        ("customer_id", "text"),
        ("occurred_us", "int"),
        ("kind", "text"),
        ("type", "text"),
        ("summary", "text"),
    ),
    rowid="position",
    indexes=(Index("by_customer", ("customer_id", "occurred_us", "position"), unique=True),),
)

# What the timeline knows about each subject (a task's title, an email's subject,
# an SMS's text, an order's number and total, a dialogue's channel:
# `ledger.summaries.FACTS`), so
# the summary of an event that names only its subject's id can name it in words.
# `facts` is a JSON object, sealed when it holds a personal value.
SUBJECTS = TableSpec(
    name="rm_timeline_subjects",
    columns=(("subject_key", "text"), ("customer_id", "text"), ("facts", "text")),
    key=("subject_key",),
)

# The timeline's page is shorter than the other tabs' (paging.DEFAULT_LIMIT): each
# item carries its event's data.
DEFAULT_LIMIT = 50

# Subject kinds whose facts are personal values (a task's title, an email's
# subject, an SMS's text and number).
_PERSONAL_FACTS = frozenset({"task", "email", "sms"})


class _SubjectRows(EntityWriter):
    """The subjects' facts rows; the timeline's writer changes them."""

    def add(self, events: Sequence[Envelope]) -> None:
        raise NotImplementedError  # fed by _TimelineWriter, never by the runner


class _TimelineWriter(AppendWriter):
    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        super().__init__(db, tables[TIMELINE.name], TIMELINE.column_names)
        self._subjects = _SubjectRows(
            db, tables[SUBJECTS.name], SUBJECTS.column_names, "subject_key"
        )
        self._keys = keys
        self._sealer = Sealer(keys)
        classes = payload_classes()
        self._kind = {name: p.kind for name, p in classes.items()}
        # Event type -> (subject kind, its id's field) for subjects with facts kept.
        self._subject = {
            name: (p.subject_kind, p.subject_field)
            for name, p in classes.items()
            if p.subject_kind in FACTS and p.subject_field is not None
        }
        self._creates = frozenset(name for name, p in classes.items() if p.creates_subject)
        self._facts: dict[str, dict[str, Any]] = {}  # subject key -> facts, revealed
        # Here, not at the top: a tab read imports no event contract.
        from ledger.events.order import personal_order_fields

        orders = {"order"} if personal_order_fields() & set(FACTS["order"]) else set()
        self._personal_kinds = _PERSONAL_FACTS | orders

    def _key(self, e: Envelope) -> str | None:
        subject = self._subject.get(e.type)
        return None if subject is None else f"{subject[0]}:{e.data[subject[1]]}"

    def _load(self, events: Sequence[Envelope]) -> None:
        creates = self._creates
        wanted = {
            k for e in events if e.type not in creates and (k := self._key(e)) is not None
        } - self._facts.keys()
        if not wanted:
            return
        self._subjects.load(wanted)
        for key in wanted:
            row = self._subjects.get(key)
            if row is not None:
                facts = json.loads(reveal_cell(self._keys, row["facts"]))
                self._facts[key] = facts if isinstance(facts, dict) else {}

    def _personal(self, key: str) -> bool:
        """Whether the subject's facts are personal values: then they, and every
        summary naming the subject, are sealed (by kind alone, so a summary is
        sealed the same whether its facts were held or erased)."""
        return key.split(":", 1)[0] in self._personal_kinds

    def add(self, events: Sequence[Envelope]) -> None:
        self._load(events)
        seal = self._sealer.text
        kind = self._kind
        rows = self.rows
        for e in events:
            key = self._key(e)
            facts = self._facts.get(key, {}) if key is not None else {}
            summary = summarize(e.type, e.data, facts)
            personal = has_personal(e.type, e.data) or (key is not None and self._personal(key))
            rows.append(
                (
                    e.position,
                    e.customer_id,
                    e.occurred_us,
                    kind[e.type],
                    e.type,
                    seal(e.customer_id, summary) if personal else summary,
                )
            )
            if key is not None:
                self._remember(e, key, facts)

    def _remember(self, e: Envelope, key: str, before: dict[str, Any]) -> None:
        after = learn(e.type, e.data, before)
        if after is None:
            return
        self._facts[key] = after
        text = json.dumps(after, ensure_ascii=False, separators=(",", ":"))
        cell = self._sealer.json_text(e.customer_id, text) if self._personal(key) else text
        row = self._subjects.get(key)
        if row is None:
            self._subjects.born({"subject_key": key, "customer_id": e.customer_id, "facts": cell})
        else:
            row["facts"] = cell

    def flush(self) -> None:
        super().flush()
        self._subjects.flush()
        # Held facts stay valid (the writer sees every event of its subjects), but
        # are dropped so memory stays bounded over a long rebuild.
        self._facts = {}


class TimelineProjection(Projection):
    """The timeline's read model: a row per event of every type, with its kind and
    summary (sealed when it holds a personal value), and the facts about each
    subject that later summaries name it by."""

    name = "timeline"
    # 2: summaries name their subjects (titles, subjects, numbers) and format
    # field changes in words. 3: an SMS's delivery and failure name it by its
    # text, and a "not a duplicate" mark names the other customer.
    version = 3
    tables = (TIMELINE, SUBJECTS)
    types = EveryEventType()

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _TimelineWriter(db, tables, keys)


@dataclass(frozen=True)
class TimelineQuery:
    """Which part of the timeline to read: kinds (none: all), a time range, and the page."""

    kinds: tuple[str, ...] = ()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")


# Every event of the customer (the card page's count of the tab).
ROWS = f"FROM {TIMELINE.name} WHERE customer_id = ?"


def timeline_tab(conn: Connection, customer_id: str, query: TimelineQuery) -> dict[str, Any]:
    """One page of the customer's timeline, newest first, each item with its stored
    event's id, actor and data."""
    sql = (
        "SELECT t.occurred_us, t.position, t.kind, t.type, t.summary "
        f"FROM {TIMELINE.name} t WHERE t.customer_id = ?"
    )
    params: list[Any] = []
    if query.kinds:
        sql += f" AND t.kind IN ({', '.join('?' * len(query.kinds))})"
        params.extend(query.kinds)
    if query.since is not None:
        sql += " AND t.occurred_us >= ?"
        params.append(micros(query.since))
    if query.until is not None:
        sql += " AND t.occurred_us < ?"
        params.append(micros(query.until))
    if query.cursor is not None:
        sql += " AND (t.occurred_us, t.position) < (?, ?)"
        params.extend(decode_cursor("timeline", customer_id, query.cursor, 2))
    order = "t.occurred_us DESC, t.position DESC"
    sql += f" ORDER BY {order} LIMIT ?"
    group = members(conn, customer_id)
    if len(group) > 1:
        sql, params = union_pages(sql, order, [[m, *params] for m in group], query.limit + 1)
    else:
        params = [customer_id, *params, query.limit + 1]
    rows = conn.fetchall(sql, params)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    states = states_at(conn, [r[1] for r in rows])
    items = [
        _item(position, kind, event_type, summary, states[position])
        for _, position, kind, event_type, summary in rows
    ]
    next_cursor = (
        encode_cursor("timeline", customer_id, (rows[-1][0], rows[-1][1])) if more else None
    )
    return {
        "customer_id": customer_id,
        "tab": "timeline",
        "items": items,
        "next_cursor": next_cursor,
    }


def first_event_at(conn: Connection, customer_id: str) -> str | None:
    """When the customer's oldest event happened (UTC, RFC 3339), or None without events."""
    group = members(conn, customer_id)
    row = conn.fetchone(
        f"SELECT occurred_us {widen(ROWS, len(group))} ORDER BY occurred_us, position LIMIT 1",
        group,
    )
    if row is None:
        return None
    return iso(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(row[0])))


def timeline_item(conn: Connection, position: int) -> dict[str, Any] | None:
    """The timeline's item for the event at `position` (as its page lists it),
    or None when the read model has no row for it."""
    rows = conn.fetchall(
        f"SELECT kind, type, summary FROM {TIMELINE.name} WHERE position = ?", [position]
    )
    if not rows:
        return None
    kind, event_type, summary = rows[0]
    return _item(position, kind, event_type, summary, states_at(conn, [position])[position])


def _item(position: int, kind: str, event_type: str, summary: str, state: bytes) -> dict[str, Any]:
    stored = upcast_document(json.loads(state))
    return {
        "position": position,
        "event_id": stored["event_id"],
        "type": event_type,
        "kind": kind,
        "occurred_at": stored["occurred_at"],
        "actor": stored["actor"],
        "summary": summary,
        "data": stored["data"],
    }
