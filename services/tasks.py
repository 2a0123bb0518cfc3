"""Acting on a task from a door (`ledger task`, the API, the card page): the
server builds the action's event from the task's current state and appends it
like any other event."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ledger.db import Connection
from ledger.input import InputItem
from ledger.lookups import states_by_event_id
from ledger.rights import RightsPolicy
from projections import registry
from projections.sealing import revealing
from projections.tasks import task_item

# Imported where used, as in services.tabs (tests/test_startup.py).
if TYPE_CHECKING:
    from ledger.appending.report import AppendReport
    from ledger.application import LedgerApplication
    from projections.models import TaskItem

from services.appending import append_items, rejected_fields
from services.errors import Category, ServiceError, service_errors
from services.tabs import catch_up

TASK_ACTIONS = ("complete", "reopen", "delete", "edit")
_ACTION_TYPES = {
    "complete": "task.completed",
    "reopen": "task.reopened",
    "delete": "task.deleted",
    "edit": "task.edited",
}
# Idempotency keys become event ids in this namespace, so a retried action is a
# duplicate event id and is stored once, by the same rule as any retried append.
_IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://interaction-ledger/task-action")


@dataclass(frozen=True)
class FieldChange:
    field: str
    new: Any


@dataclass(frozen=True)
class TaskActionRequest:
    customer_id: str
    task_id: str
    action: str
    user_id: str  # the acting user, the event's actor
    changes: tuple[FieldChange, ...] = ()
    idempotency_key: str | None = None
    source: str = "ledger"


@dataclass(frozen=True)
class TaskActionResult:
    task: TaskItem | None  # None once deleted
    stored: bool  # False when the idempotency key had already stored it


def task_action(
    app: LedgerApplication, conn: Connection, policy: RightsPolicy, request: TaskActionRequest
) -> TaskActionResult:
    """Build the action's event from the task's current state, let the domain
    check it (status and rights) exactly as an appended event, store it, and
    answer the task as its tab now shows it to the acting user."""
    if request.action not in _ACTION_TYPES:
        raise ServiceError(
            Category.USAGE,
            f"unknown task action {request.action!r} (actions: {', '.join(TASK_ACTIONS)})",
        )
    if request.action == "edit" and not request.changes:
        raise ServiceError(Category.USAGE, "edit needs at least one change")
    if request.action != "edit" and request.changes:
        raise ServiceError(Category.USAGE, f"{request.action} takes no changes")
    event_id = _event_id(request)
    with service_errors():
        if request.idempotency_key is not None and states_by_event_id(conn, [str(event_id)]):
            # A retry of an action already stored: answer as the first call did.
            return TaskActionResult(task=_task_item(conn, policy, request), stored=False)
        customer = app.customer(request.customer_id)
        if not customer.exists:
            raise ServiceError(
                Category.NOT_FOUND, f"customer {request.customer_id!r} does not exist"
            )
        if customer.tasks.get(request.task_id, "deleted") == "deleted":
            raise ServiceError(
                Category.NOT_FOUND,
                f"task {request.task_id!r} does not exist for customer {request.customer_id!r}",
            )
        data: dict[str, Any] = {"task_id": request.task_id}
        if request.action == "edit":
            current = _task_fields(conn, request.task_id)
            data["changes"] = [
                {"field": c.field, "old": current.get(c.field), "new": c.new}
                for c in request.changes
            ]
        event = {
            "event_id": str(event_id),
            "type": _ACTION_TYPES[request.action],
            "customer_id": request.customer_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "actor": {"kind": "user", "id": request.user_id},
            "source": request.source,
            "data": data,
        }
        report = append_items(app, policy, [InputItem(0, json.dumps(event, ensure_ascii=False))])
    if report.rejected:
        raise _action_refused(app, request, report)
    return TaskActionResult(task=_task_item(conn, policy, request), stored=report.appended == 1)


def _task_item(
    conn: Connection, policy: RightsPolicy, request: TaskActionRequest
) -> TaskItem | None:
    """The task as the acting user's tasks tab shows it now; None once deleted."""
    from projections.models import TaskItem

    with service_errors():
        catch_up(conn, [registry.get("tasks")])
        item = task_item(
            revealing(conn), request.customer_id, request.task_id, request.user_id, policy
        )
    return None if item is None else TaskItem.model_validate(item)


def _event_id(request: TaskActionRequest) -> uuid.UUID:
    if request.idempotency_key is None:
        return uuid.uuid4()
    # The key is scoped to its action on its task by its user: the same key
    # reused for something else is a different event.
    scope = "\x1f".join(
        (
            request.customer_id,
            request.task_id,
            request.action,
            request.user_id,
            request.idempotency_key,
        )
    )
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, scope)


def _action_refused(
    app: LedgerApplication, request: TaskActionRequest, report: AppendReport
) -> ServiceError:
    """The domain refused the event: say why in the caller's terms."""
    errors = rejected_fields(report)
    reason = "; ".join(f"{e.field}: {e.reason}" for e in errors)
    if any(e.field == "actor.id" for e in errors):
        return ServiceError(Category.FORBIDDEN, reason, errors)
    if any(e.field.startswith("data.changes") for e in errors):
        return ServiceError(Category.REJECTED, reason, errors)
    # A concurrent action may have deleted it since we looked.
    if app.customer(request.customer_id).tasks.get(request.task_id, "deleted") == "deleted":
        return ServiceError(Category.NOT_FOUND, reason, errors)
    return ServiceError(Category.CONFLICT, reason, errors)


def _task_fields(conn: Connection, task_id: str) -> dict[str, Any]:
    """A task's current fields, folded from its events (the `old` of an edit)."""
    from ledger.audit.history import Selector, iter_history

    fields: dict[str, Any] = {}
    for event in iter_history(conn, Selector("task", task_id)):
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "task.created":
            fields.update({k: v for k, v in data.items() if k != "task_id"})
        elif event.type == "task.edited":
            for change in data.get("changes", []):
                fields[change["field"]] = change["new"]
    return fields
