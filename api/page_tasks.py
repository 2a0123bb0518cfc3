"""The card's task forms: `POST /customers/{id}/tasks/{task_id}/{action}`
(the complete, reopen and delete buttons, and the edit form) call
`task_action`, the function behind the JSON endpoint, as the acting user the
HTTP API's own rule decides (`api.caller.acting_user`); then back to the
tasks tab with what happened, a refusal included, as a plain sentence
(post/redirect/get: `Visit.redirect_with`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.models import Id
from api.page_common import Visit, read_form, run_in_thread, visit
from api.page_flash import DONE, refusal_notice, saved
from api.page_time import BadFormValue, Clock, form_clock
from api.page_view import Notice, View, edit_changes, task_of
from ledger.db import Connection
from ledger.rights import RightsPolicy
from services.errors import Category, ServiceError
from services.people import display_name
from services.tabs import tab_answer, tab_request
from services.tasks import FieldChange, TaskActionRequest, task_action

PAGE_SOURCE = "ledger-page"  # the `source` of events the page appends
NOT_ACTING = Notice("Your access key may read this card but not change it.", "error")

router = APIRouter(include_in_schema=False)


@router.post("/customers/{customer_id:segment}/tasks/{task_id:segment}/{action}")
async def task_button(request: Request, customer_id: Id, task_id: Id, action: str) -> Response:
    """A task button or the edit form, posted: the form read here, the action
    taken on the thread pool."""
    form = await read_form(request)
    return await run_in_thread(task_button_sync, request, customer_id, task_id, action, form)


def task_button_sync(
    request: Request, customer_id: str, task_id: str, action: str, form: Mapping[str, str]
) -> Response:
    """`task_button` past reading the form: the checks of origin, reader and
    CSRF token, then the action."""
    v = visit(request)
    refusal = v.form_refusal(form)
    if refusal is not None:
        return refusal
    clock = form_clock(form.get("tz"))
    view = View(customer_id, "tasks", clock.name)
    back = view.url(tab="tasks")
    user = v.who.acting_user
    if user is None:
        return v.redirect_with(back, NOT_ACTING)
    try:
        changes, people = _act(v, view, task_id, action, user, form, clock)
    except BadFormValue as exc:
        return v.redirect_with(back, Notice(f"{exc}.", "error"))
    except ServiceError as exc:
        # The rule's code, said as a plain sentence, on the card the user came from.
        return v.redirect_with(back, refusal_notice(exc, action))
    if action == "edit":
        return v.redirect_with(back, saved(changes or [], people))
    return v.redirect_with(back, Notice(DONE.get(action, "Done.")))


def _act(
    v: Visit,
    view: View,
    task_id: str,
    action: str,
    user: str,
    form: Mapping[str, str],
    clock: Clock,
) -> tuple[list[dict[str, Any]] | None, dict[str, str]]:
    """Take `action` on the task as `user`; an edit's changes (one that
    changes nothing stores nothing), and the names of the people they assign."""
    state = v.state
    policy = state.services.policy()
    state.ensure_ready()
    with state.pool.connection() as conn:
        changes: tuple[FieldChange, ...] = ()
        if action == "edit":
            changes = _edit_changes(conn, view.customer_id, task_id, user, form, clock, policy)
            if not changes:
                return [], {}
        task_action(
            state.services.app(),
            conn,
            policy,
            TaskActionRequest(
                customer_id=view.customer_id,
                task_id=task_id,
                action=action,
                user_id=user,
                changes=changes,
                source=PAGE_SOURCE,
            ),
        )
        assigned = [str(c.new) for c in changes if c.field == "assignee_id" and c.new]
        people = {a: display_name(conn, a, state.services.people()) for a in assigned}
    if action != "edit":
        return None, {}
    return [{"field": c.field, "new": c.new} for c in changes], people


def _edit_changes(
    conn: Connection,
    customer_id: str,
    task_id: str,
    user: str,
    form: Mapping[str, str],
    clock: Clock,
    policy: RightsPolicy,
) -> tuple[FieldChange, ...]:
    request = tab_request(customer_id, "tasks", viewer=user, policy=policy)
    tasks = tab_answer(conn, request).model_dump(mode="json")
    task = task_of(tasks, task_id)
    if task is None:
        raise ServiceError(
            Category.NOT_FOUND,
            f"task {task_id!r} does not exist for customer {customer_id!r}",
            code="task_missing",
        )
    return tuple(FieldChange(c["field"], c["new"]) for c in edit_changes(task, form, clock))
