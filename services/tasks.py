"""Acting on a task from a door (`ledger task`, the API, the card page): the
server builds the action's event from the task's current state and appends it
like any other event."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ledger.db import Connection
from ledger.input import InputItem
from ledger.lookups import states_by_event_id
from ledger.people import EMPTY, Directory
from ledger.rights import RightsPolicy
from projections import registry
from projections.sealing import revealing
from projections.tasks import task_item

# Imported where used, as in services.tabs (tests/integration/test_startup.py).
if TYPE_CHECKING:
    from ledger.appending.report import AppendReport
    from ledger.application import LedgerApplication
    from projections.models import TaskItem

from services.appending import append_items, keyed_event_id, rejected_fields
from services.errors import Category, RejectedField, ServiceError, service_errors
from services.freshness import catch_up
from services.people import name_people

TASK_ACTIONS = ("complete", "reopen", "delete", "edit")
_ACTION_TYPES = {
    "complete": "task.completed",
    "reopen": "task.reopened",
    "delete": "task.deleted",
    "edit": "task.edited",
}
# An idempotency key becomes an event id in this namespace, so a retried action
# is stored at most once, by the same unique event id as any retried append.
_IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://interaction-ledger/task-action")


@dataclass(frozen=True)
class FieldChange:
    """One field an edit sets to a new value (the server fills in the old one)."""

    field: str
    new: Any


@dataclass(frozen=True)
class TaskActionRequest:
    """An action on a customer's task by a user; an idempotency key makes a retry
    store it at most once."""

    customer_id: str
    task_id: str
    action: str
    user_id: str  # the acting user, the event's actor
    changes: tuple[FieldChange, ...] = ()
    idempotency_key: str | None = None
    source: str = "ledger"
    people: Directory = EMPTY  # names the answer's assignee


@dataclass(frozen=True)
class TaskActionResult:
    """The task as its tab now shows it to the acting user, and whether this
    request stored the action's event."""

    task: TaskItem | None  # None once deleted
    stored: bool  # False when the idempotency key had already stored it


def task_action(
    app: LedgerApplication, conn: Connection, policy: RightsPolicy, request: TaskActionRequest
) -> TaskActionResult:
    """Build the action's event from the task's current state, let the domain
    check it (status and rights) exactly as an appended event, store it, and
    answer the task as its tab now shows it to the acting user.

    With an idempotency key every request gets the answer of the one event the
    key stored: the task as that event left it, whether the request stored it,
    raced the one that did, or came later (even after further actions). The key
    reused for another action, task or changes is refused (REJECTED)."""
    if request.action not in _ACTION_TYPES:
        raise ServiceError(
            Category.USAGE,
            f"unknown task action {request.action!r} (actions: {', '.join(TASK_ACTIONS)})",
        )
    if request.action == "edit" and not request.changes:
        raise ServiceError(Category.USAGE, "edit needs at least one change")
    if request.action != "edit" and request.changes:
        raise ServiceError(Category.USAGE, f"{request.action} takes no changes")
    if request.idempotency_key is None:
        _store_action(app, conn, policy, request, str(uuid.uuid4()))
        return TaskActionResult(task=_task_item(conn, policy, request), stored=True)
    event_id = _event_id(request.user_id, request.idempotency_key)
    earlier = _keyed_answer(conn, policy, request, event_id)
    if earlier is not None:
        return earlier
    try:
        stored = _store_action(app, conn, policy, request, event_id)
    except ServiceError as refused:
        if refused.category in (Category.UNAVAILABLE, Category.USAGE):
            raise
        # A request with the same key may have stored its event since we looked
        # (the store refuses ours as a different event under its id, or the
        # task is already deleted or completed by it): answer as that one did.
        earlier = _keyed_answer(conn, policy, request, event_id)
        if earlier is None:
            raise
        return earlier
    answer = _keyed_answer(conn, policy, request, event_id)
    if answer is None:  # stored, then gone: cannot happen to an append-only table
        raise ServiceError(Category.CONFLICT, f"the stored event {event_id} is not found")
    return replace(answer, stored=stored)


def _store_action(
    app: LedgerApplication,
    conn: Connection,
    policy: RightsPolicy,
    request: TaskActionRequest,
    event_id: str,
) -> bool:
    """Append the action's event under `event_id`; False if an identical event
    was stored already. A refusal is a ServiceError in the caller's terms."""
    with service_errors():
        customer = app.customer(request.customer_id)
        if not customer.exists:
            raise ServiceError(
                Category.NOT_FOUND,
                f"customer {request.customer_id!r} does not exist",
                code="customer_missing",
            )
        if customer.tasks.get(request.task_id, "deleted") == "deleted":
            raise ServiceError(
                Category.NOT_FOUND,
                f"task {request.task_id!r} does not exist for customer {request.customer_id!r}",
                code="task_missing",
            )
        data: dict[str, Any] = {"task_id": request.task_id}
        if request.action == "edit":
            current = _task_fields(conn, request.task_id)
            data["changes"] = [
                {"field": c.field, "old": current.get(c.field), "new": c.new}
                for c in request.changes
            ]
        event = {
            "event_id": event_id,
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
    return report.appended == 1


def _keyed_answer(
    conn: Connection, policy: RightsPolicy, request: TaskActionRequest, event_id: str
) -> TaskActionResult | None:
    """The answer to `request` from the event its key stored (`stored` False):
    the task as that event left it, as the acting user sees it. None if the key
    stored nothing; REJECTED if it stored another action than `request` asks for."""
    from ledger.audit.history import Selector, iter_history
    from projections.base import Envelope
    from projections.models import TaskItem
    from projections.tasks import task_as_of

    with service_errors():
        state = states_by_event_id(conn, [event_id]).get(event_id)
        if state is None:
            return None
        # Which action and task: none of these is a personal value, so the
        # stored JSON says them without the keys.
        stored = json.loads(state)
        data = stored.get("data") if isinstance(stored.get("data"), dict) else {}
        did = _KeyedAction(
            str(stored.get("type")), str(stored.get("customer_id")), str(data.get("task_id"))
        )
        if did != _KeyedAction(_ACTION_TYPES[request.action], request.customer_id, request.task_id):
            raise _key_reused(request, event_id, did)
        events: list[Envelope] = []
        found = False
        for e in iter_history(conn, Selector("task", did.task_id)):
            if e.occurred_at is None or not isinstance(e.data, dict):
                continue  # unreadable (`ledger audit verify` reports it): not the task's
            document = {
                "event_id": e.event_id,
                "customer_id": e.customer_id,
                "occurred_at": e.occurred_at,
                "actor": {},
                "data": e.data,
            }
            events.append(Envelope.of(e.position, e.type, document))
            if e.event_id == event_id:
                found = True
                break
        if not found:  # its subject column does not name its task: answer nothing
            return None
        if request.action == "edit" and _changes_of(events[-1].data) != _changes_of(
            {"changes": [{"field": c.field, "new": c.new} for c in request.changes]}
        ):
            raise _key_reused(request, event_id, did, other_changes=True)
        item = task_as_of(events, request.user_id, policy)
        if item is not None:
            catch_up(conn, [registry.get("people")])
            name_people(conn, [item], request.people)
    return TaskActionResult(None if item is None else TaskItem.model_validate(item), False)


@dataclass(frozen=True)
class _KeyedAction:
    type: str
    customer_id: str
    task_id: str


def _changes_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    """An edit's changes as what a request names: each field and its new value
    (as JSON text, so that values compare as the JSON they were sent as)."""
    return [
        (str(c.get("field")), json.dumps(c.get("new"), sort_keys=True))
        for c in data.get("changes", [])
        if isinstance(c, dict)
    ]


def _key_reused(
    request: TaskActionRequest, event_id: str, did: _KeyedAction, *, other_changes: bool = False
) -> ServiceError:
    action = next((a for a, t in _ACTION_TYPES.items() if t == did.type), did.type)
    what = f"{action} of task {did.task_id!r} of customer {did.customer_id!r}"
    asked = (
        "other changes"
        if other_changes
        else f"{request.action} of task {request.task_id!r} of customer {request.customer_id!r}"
    )
    reason = (
        f"this idempotency key of user {request.user_id!r} was used for {what}, not for "
        f"{asked}; a retry must repeat the same request, a new action needs a new key"
    )
    return ServiceError(
        Category.REJECTED,
        reason,
        [RejectedField(0, event_id, _ACTION_TYPES[request.action], "idempotency_key", reason)],
    )


def _task_item(
    conn: Connection, policy: RightsPolicy, request: TaskActionRequest
) -> TaskItem | None:
    """The task as the acting user's tasks tab shows it now; None once deleted."""
    from projections.models import TaskItem

    with service_errors():
        catch_up(conn, [registry.get("tasks"), registry.get("people")])
        item = task_item(
            revealing(conn), request.customer_id, request.task_id, request.user_id, policy
        )
        if item is not None:
            name_people(conn, [item], request.people)
    return None if item is None else TaskItem.model_validate(item)


def _event_id(user_id: str, idempotency_key: str) -> str:
    # The action and its task are not part of the id, so the key reused for
    # another one finds the event it stored and is refused, not stored again.
    return keyed_event_id(_IDEMPOTENCY_NAMESPACE, user_id, idempotency_key)


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


@dataclass(frozen=True)
class NewTaskRequest:
    """A task a user adds to a customer: a title, and optionally a due time (as
    a user types it, `ledger.times.parse_user_time`), an assignee and a text."""

    customer_id: str
    user_id: str  # the acting user, the event's actor
    title: str
    due_at: str | None = None
    assignee_id: str | None = None
    text: str | None = None
    idempotency_key: str | None = None
    source: str = "ledger"
    people: Directory = EMPTY  # names the answer's people, as the tabs do


def add_task(
    app: LedgerApplication, conn: Connection, policy: RightsPolicy, request: NewTaskRequest
) -> TaskActionResult:
    """Store `task.created` with a task id of the server's, as `request.user_id`,
    through the append every event takes; answer the task as the acting user's
    tasks tab lists it (as its creation left it, also for a retried key)."""
    from ledger.times import BadTime, parse_user_time
    from projections.base import Envelope
    from projections.models import TaskItem
    from projections.tasks import task_as_of
    from services.creating import NewSubject, create

    due_at = None
    if request.due_at is not None and request.due_at.strip():
        try:
            due_at = parse_user_time(request.due_at.strip()).isoformat()
        except BadTime as exc:
            reason = f"due_at: {exc}"
            raise ServiceError(
                Category.REJECTED,
                reason,
                [RejectedField(0, None, "task.created", "data.due_at", str(exc), "bad_time")],
            ) from None
    data = {
        "title": request.title.strip(),
        "text": request.text or None,
        "due_at": due_at,
        "assignee_id": (request.assignee_id or "").strip() or None,
    }
    created = create(
        app,
        conn,
        policy,
        NewSubject(
            customer_id=request.customer_id,
            user_id=request.user_id,
            event_type="task.created",
            subject_field="task_id",
            prefix="task",
            data={k: v for k, v in data.items() if v is not None},
            idempotency_key=request.idempotency_key,
            source=request.source,
            people=request.people,
        ),
    )
    i = created.item
    document = {
        "event_id": i["event_id"],
        "customer_id": request.customer_id,
        "occurred_at": i["occurred_at"],
        "actor": i["actor"],
        "data": i["data"],
    }
    item = task_as_of([Envelope.of(i["position"], i["type"], document)], request.user_id, policy)
    if item is None:  # a task.created always makes a task
        raise ServiceError(Category.CONFLICT, f"task {created.subject_id!r} is not found")
    return TaskActionResult(TaskItem.model_validate(item), created.stored)


@dataclass(frozen=True)
class Person:
    """Someone a task can be assigned to: a user id and the name to show."""

    id: str
    name: str


# How many of a customer's newest events `task_assignees` reads for names.
_NAMES_FROM_EVENTS = 200


def task_assignees(
    conn: Connection, customer_id: str, user_id: str | None, directory: Directory = EMPTY
) -> list[Person]:
    """The people the card offers as a task's assignee, by name: the users of the
    people directory, the users seen acting on this customer's newest events,
    those its tasks are assigned to, and the acting user. Named by the one rule
    every door uses (`services.people`); the one place this list is made."""
    from ledger.reading import states_at
    from projections.tasks import TASKS
    from projections.timeline import TIMELINE
    from services.people import names_of

    ids: dict[str, None] = dict.fromkeys(
        key.partition(":")[2] for key in directory.names if key.startswith("user:")
    )
    with service_errors():
        catch_up(conn, [registry.get(n) for n in ("timeline", "tasks", "people")])
        positions = conn.fetchall(
            f"SELECT position FROM {TIMELINE.name} WHERE customer_id = ? "
            "ORDER BY occurred_us DESC, position DESC LIMIT ?",
            [customer_id, _NAMES_FROM_EVENTS],
        )
        for state in states_at(conn, [int(p[0]) for p in positions]).values():
            actor = json.loads(state).get("actor") or {}
            if actor.get("kind") == "user" and actor.get("id"):
                ids.setdefault(str(actor["id"]))
        for (assignee,) in conn.fetchall(
            f"SELECT DISTINCT assignee_id FROM {TASKS.name} "
            "WHERE customer_id = ? AND assignee_id IS NOT NULL",
            [customer_id],
        ):
            ids.setdefault(str(assignee))
    if user_id is not None:
        ids.setdefault(user_id)
    names = names_of(conn, list(ids), directory)
    people = [Person(pid, names[pid] or pid) for pid in ids]
    return sorted(people, key=lambda p: (p.name.casefold(), p.id))
