"""Field-level change history, the shape shared by the orders and card tabs:
one row per changed field, newest first, the fields of one event in the order
the event lists them. A creation counts as every given field changing from null."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from ledger.db import Connection
from projections.base import Envelope
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.sealing import Sealer
from projections.tables import ColumnType, Index, TableSpec


def history_table(name: str, *, subject: str | None) -> TableSpec:
    """A change-history table: one row per changed field, keyed for paging by (customer,
    time, position, seq); `subject` names the column of the changed thing's id, if
    any."""
    subject_column: tuple[tuple[str, ColumnType], ...] = ((subject, "text"),) if subject else ()
    return TableSpec(
        name=name,
        columns=(
            ("position", "int"),
            ("seq", "int"),
            ("customer_id", "text"),
            ("occurred_us", "int"),
            *subject_column,
            ("field", "text"),
            ("old", "text"),
            ("new", "text"),
            ("occurred_at", "text"),
            ("actor", "text"),
        ),
        indexes=(
            Index("by_customer", ("customer_id", "occurred_us", "position", "seq"), unique=True),
        ),
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@lru_cache(maxsize=4096)
def _actor_json(kind: str, actor_id: str, name: str | None) -> str:
    return json.dumps({"kind": kind, "id": actor_id, "name": name}, ensure_ascii=False)


def actor_json(actor: dict[str, Any]) -> str:
    """The actor as JSON; a ledger has few distinct actors, so each is encoded once."""
    return _actor_json(actor["kind"], actor["id"], actor.get("name"))


def change_rows(
    e: Envelope,
    changes: Iterable[tuple[str, Any, Any]],
    subject_id: str | None = None,
    *,
    sealer: Sealer | None = None,
    personal: Callable[[str], bool] = lambda field: True,
) -> list[tuple[Any, ...]]:
    """One row per change; with a `sealer`, the old and new values of personal
    fields are stored sealed (projections.sealing)."""
    head: tuple[Any, ...] = (e.customer_id, e.occurred_us)
    if subject_id is not None:
        head += (subject_id,)
    when, actor = e.occurred_at, actor_json(e.actor)
    customer_id = e.customer_id

    def cell(field: str, value: Any) -> str:
        text = _json(value)
        if sealer is not None and personal(field):
            return sealer.json_text(customer_id, text)
        return text

    return [
        (e.position, seq, *head, field, cell(field, old), cell(field, new), when, actor)
        for seq, (field, old, new) in enumerate(changes)
    ]


def history_from(spec: TableSpec) -> str:
    """The FROM clause of one customer's rows of a history table."""
    return f"FROM {spec.name} WHERE customer_id = ?"


# Newest event first; one event's changes in the order it lists them.
HISTORY_KEY = ("occurred_us", "position", "seq")


def history_tab(
    conn: Connection,
    spec: TableSpec,
    tab: str,
    customer_id: str,
    subject: str | None,
    page: Page = FIRST_PAGE,
) -> dict[str, Any]:
    """One page of a customer's rows in the history table `spec`, as the tab `tab` lists
    them: newest event first, one event's changes in order, values decoded from JSON."""
    subject_column = f"{subject}, " if subject else ""
    paged = PagedQuery(
        tab,
        f"occurred_us, position, seq, {subject_column}field, old, new, occurred_at, actor",
        history_from(spec),
        HISTORY_KEY,
        ascending_last=True,
    )
    rows, next_cursor = paged.fetch(conn, customer_id, page)
    items = []
    for row in rows:
        item: dict[str, Any] = {subject: row[0]} if subject else {}
        field, old, new, occurred_at, actor = row[-5:]
        item.update(
            {
                "field": field,
                "old": json.loads(old),
                "new": json.loads(new),
                "occurred_at": occurred_at,
                "actor": json.loads(actor),
            }
        )
        items.append(item)
    return {"customer_id": customer_id, "tab": tab, "items": items, "next_cursor": next_cursor}
