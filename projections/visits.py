"""Visits: one row per site visit, newest first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, Projection, Tables, Writer
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.tables import Index, TableSpec
from projections.writing import AppendWriter

VISITS = TableSpec(
    name="rm_visits",
    columns=(
        ("position", "int"),
        ("customer_id", "text"),
        ("started_us", "int"),
        ("visit_id", "text"),
        ("started_at", "text"),
        ("site", "text"),
        ("source", "text"),
        ("channel", "text"),
        ("duration_s", "int"),
        ("pages_viewed", "int"),
        ("utm", "text"),
    ),
    rowid="position",
    indexes=(Index("by_customer", ("customer_id", "started_us", "position"), unique=True),),
)


class _VisitsWriter(AppendWriter):
    def add(self, events: Sequence[Envelope]) -> None:
        self.rows += [
            (
                e.position,
                e.customer_id,
                e.occurred_us,
                d["visit_id"],
                e.occurred_at,
                d.get("site"),
                d["source"],
                d["channel"],
                d["duration_s"],
                d.get("pages_viewed"),
                _utm_json(d.get("utm")),
            )
            for e in events
            for d in (e.data,)
        ]


def _utm_json(utm: Any) -> str | None:
    """The visit's campaign (`utm`, version 2 of visit.recorded; a version-1
    event's `campaign` is upcast to it) as JSON, absent keys left out."""
    if not isinstance(utm, dict):
        return None
    given = {k: v for k, v in utm.items() if v is not None}
    return json.dumps(given, ensure_ascii=False) if given else None


class VisitsProjection(Projection):
    """The visits tab's read model: a row per recorded site visit."""

    name = "visits"
    # 2: the visit's campaign (`utm`).
    version = 2
    tables = (VISITS,)
    types = frozenset({"visit.recorded"})

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _VisitsWriter(db, tables[VISITS.name], VISITS.column_names)


ROWS = f"FROM {VISITS.name} WHERE customer_id = ?"
PAGED = PagedQuery(
    "visits",
    "started_us, position, visit_id, started_at, site, source, channel, duration_s, "
    "pages_viewed, utm",
    ROWS,
    ("started_us", "position"),
)


def visits_tab(conn: Connection, customer_id: str, page: Page = FIRST_PAGE) -> dict[str, Any]:
    """One page of the customer's visits, newest first."""
    rows, next_cursor = PAGED.fetch(conn, customer_id, page)
    items = [
        {
            "visit_id": visit_id,
            "started_at": started_at,
            "site": site,
            "source": source,
            "channel": channel,
            "duration_s": duration_s,
            "pages_viewed": pages_viewed,
            "utm": json.loads(utm) if utm else {},
        }
        for visit_id, started_at, site, source, channel, duration_s, pages_viewed, utm in rows
    ]
    return {"customer_id": customer_id, "tab": "visits", "items": items, "next_cursor": next_cursor}
