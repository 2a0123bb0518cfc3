"""Tasks: one row per task with its current status; the viewer's actions are
computed at query time, because they depend on who asks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from ledger.rights import RightsPolicy
from projections.base import Envelope, Projection, Tables, Writer
from projections.clock import iso
from projections.merges import members, widen
from projections.paging import FIRST_PAGE, Page, PagedQuery
from projections.sealing import Sealer
from projections.tables import Index, TableSpec
from projections.writing import EntityWriter

TASKS = TableSpec(
    name="rm_tasks",
    columns=(
        ("task_id", "text"),
        ("customer_id", "text"),
        ("created_us", "int"),
        ("position", "int"),
        ("title", "text"),
        ("status", "text"),
        ("created_at", "text"),
        ("completed_at", "text"),
        ("due_at", "text"),
        ("assignee_id", "text"),
    ),
    key=("task_id",),
    indexes=(Index("by_customer", ("customer_id", "created_us", "position")),),
)

# `task.edited` changes that show on the tab; other fields (e.g. `text`) do not.
_EDITABLE = ("title", "due_at", "assignee_id")

# Actions open to a task in each status, in display order, and the right each needs.
ACTIONS: dict[str, tuple[str, ...]] = {
    "pending": ("edit", "complete", "delete"),
    "completed": ("reopen", "delete"),
}
RIGHT_FOR_ACTION = {"edit": "tasks.edit", "reopen": "tasks.reopen", "delete": "tasks.delete"}


class _TasksWriter(EntityWriter):
    def __init__(self, db: Connection, tables: Tables, keys: Ciphers) -> None:
        super().__init__(db, tables[TASKS.name], TASKS.column_names, "task_id")
        self._sealer = Sealer(keys)

    def add(self, events: Sequence[Envelope]) -> None:
        self.load_referenced(events)
        seal = self._sealer.text
        for e in events:
            if e.type == "task.created":
                self.born(new_task(e, seal))
                continue
            row = self.get(e.data["task_id"])
            if row is None:  # the write model never lets this happen; stay robust
                continue
            change_task(row, e, seal)


# The read model's rules for a task's row, also folded in memory by `task_as_of`
# (an idempotent task action's answer), so that answer and the tab cannot disagree.
Seal = Callable[[str, str | None], str | None]


def _plain(customer_id: str, value: str | None) -> str | None:
    return value


def new_task(e: Envelope, seal: Seal = _plain) -> dict[str, Any]:
    """The row a `task.created` event makes; `seal` wraps its personal texts."""
    data = e.data
    due_at = data.get("due_at")
    return {
        "task_id": data["task_id"],
        "customer_id": e.customer_id,
        "created_us": e.occurred_us,
        "position": e.position,
        "title": seal(e.customer_id, data["title"]),
        "status": "pending",
        "created_at": e.occurred_at,
        "completed_at": None,
        "due_at": iso(datetime.fromisoformat(due_at)) if due_at else None,
        "assignee_id": data.get("assignee_id"),
    }


def change_task(row: dict[str, Any], e: Envelope, seal: Seal = _plain) -> None:
    """Apply any later event of the task to its row."""
    kind = e.type
    if kind == "task.edited":
        for change in e.data["changes"]:
            field = change["field"]
            if field in _EDITABLE:
                value = None if change["new"] is None else str(change["new"])
                if e.payload().personal_change(field):
                    value = seal(e.customer_id, value)
                row[field] = value
    elif kind == "task.completed":
        row["status"], row["completed_at"] = "completed", e.occurred_at
    elif kind == "task.reopened":
        row["status"], row["completed_at"] = "pending", None
    elif kind == "task.deleted":
        row["status"] = "deleted"


class TasksProjection(Projection):
    """The tasks tab's read model: a row per task with its current status and the fields
    the tab shows; the title is sealed as personal."""

    name = "tasks"
    tables = (TASKS,)
    types = frozenset(
        {"task.created", "task.edited", "task.completed", "task.reopened", "task.deleted"}
    )

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _TasksWriter(db, tables, keys)


def actions_for(status: str, viewer: str | None, policy: RightsPolicy) -> list[str]:
    """What `viewer` may do with a task; without a viewer, what the status allows."""
    open_actions = ACTIONS.get(status, ())
    if viewer is None:
        return list(open_actions)
    return [
        a
        for a in open_actions
        if a not in RIGHT_FOR_ACTION or policy.allows(viewer, RIGHT_FOR_ACTION[a])
    ]


# The tab's rows (deleted tasks are kept in the table, never shown).
ROWS = f"FROM {TASKS.name} WHERE customer_id = ? AND status <> 'deleted'"
_COLUMNS = "task_id, title, status, created_at, completed_at, due_at, assignee_id"
PAGED = PagedQuery("tasks", f"created_us, position, {_COLUMNS}", ROWS, ("created_us", "position"))


def _item(row: Sequence[Any], viewer: str | None, policy: RightsPolicy) -> dict[str, Any]:
    task_id, title, status, created_at, completed_at, due_at, assignee_id = row
    return {
        "task_id": task_id,
        "title": title,
        "status": status,
        "created_at": created_at,
        "completed_at": completed_at,
        "due_at": due_at,
        "assignee_id": assignee_id,
        "assignee_name": None,  # filled by services.people
        "actions": actions_for(status, viewer, policy),
    }


def tasks_tab(
    conn: Connection,
    customer_id: str,
    viewer: str | None,
    policy: RightsPolicy,
    page: Page = FIRST_PAGE,
) -> dict[str, Any]:
    """One page of the customer's tasks (deleted ones left out), newest first, each with
    the actions `viewer` may take."""
    rows, next_cursor = PAGED.fetch(conn, customer_id, page)
    items = [_item(row, viewer, policy) for row in rows]
    return {"customer_id": customer_id, "tab": "tasks", "items": items, "next_cursor": next_cursor}


def task_item(
    conn: Connection, customer_id: str, task_id: str, viewer: str | None, policy: RightsPolicy
) -> dict[str, Any] | None:
    """One task as the tasks tab lists it, whichever page it is on; None if the
    customer has no such task (or it was deleted)."""
    group = members(conn, customer_id)
    row = conn.fetchone(
        f"SELECT {_COLUMNS} {widen(ROWS, len(group))} AND task_id = ?", (*group, task_id)
    )
    return None if row is None else _item(row, viewer, policy)


def task_as_of(
    events: Iterable[Envelope], viewer: str | None, policy: RightsPolicy
) -> dict[str, Any] | None:
    """A task as the tasks tab would have listed it after `events` (its own, in
    order, personal values revealed), by the rules the read model applies;
    None if they do not create it or end deleted."""
    row: dict[str, Any] | None = None
    for e in events:
        if e.type == "task.created":
            row = new_task(e)
        elif row is not None:
            change_task(row, e)
    if row is None or row["status"] == "deleted":
        return None
    return _item([row[c] for c in _COLUMNS.split(", ")], viewer, policy)
