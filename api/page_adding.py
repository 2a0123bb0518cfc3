"""The card's "Add note" and "Add task" forms: `POST /customers/{id}/notes`
and `POST /customers/{id}/tasks` call `add_note` and `add_task`, the functions
behind the JSON endpoints, as the acting user the HTTP API's own rule decides
(`api.caller.acting_user`); then back to the card with what happened, a
refusal included, as a plain sentence (post/redirect/get)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.models import Id
from api.page_common import Visit, read_form, run_in_thread, visit
from api.page_flash import refusal_notice
from api.page_tasks import NOT_ACTING, PAGE_SOURCE
from api.page_time import BadFormValue, Clock, form_clock, local_moment
from api.page_view import Notice, View
from services.errors import ServiceError
from services.notes import NoteRequest, add_note
from services.tasks import NewTaskRequest, add_task

router = APIRouter(include_in_schema=False)


@router.post("/customers/{customer_id:segment}/notes")
async def note_form(request: Request, customer_id: Id) -> Response:
    """The "Add note" form, posted."""
    form = await read_form(request)
    return await run_in_thread(_add, request, customer_id, "note", form)


@router.post("/customers/{customer_id:segment}/tasks")
async def task_form(request: Request, customer_id: Id) -> Response:
    """The "Add task" form, posted."""
    form = await read_form(request)
    return await run_in_thread(_add, request, customer_id, "task", form)


def _add(request: Request, customer_id: str, what: str, form: Mapping[str, str]) -> Response:
    """The checks of origin, reader and CSRF token, then the note or task
    added; back to the tab that lists it."""
    v = visit(request)
    refused = v.form_refusal(form)
    if refused is not None:
        return refused
    clock = form_clock(form.get("tz"))
    view = View(customer_id, "tasks" if what == "task" else "timeline", clock.name)
    back = view.url()
    user = v.who.acting_user
    if user is None:
        return v.redirect_with(back, NOT_ACTING)
    try:
        done = _store(v, customer_id, what, user, form, clock)
    except BadFormValue as exc:
        return v.redirect_with(back, Notice(f"{exc}.", "error"))
    except ServiceError as exc:
        return v.redirect_with(back, refusal_notice(exc))
    return v.redirect_with(back, done)


def _store(
    v: Visit, customer_id: str, what: str, user: str, form: Mapping[str, str], clock: Clock
) -> Notice:
    state = v.state
    state.ensure_ready()
    with state.pool.connection() as conn:
        if what == "note":
            add_note(
                state.services.app(),
                conn,
                state.services.policy(),
                NoteRequest(
                    customer_id,
                    user,
                    form.get("text", "").strip(),
                    source=PAGE_SOURCE,
                    people=state.services.people(),
                ),
            )
            return Notice("Note added.")
        due_text = form.get("due_at", "").strip()
        due = local_moment(due_text, clock).isoformat() if due_text else None
        result = add_task(
            state.services.app(),
            conn,
            state.services.policy(),
            NewTaskRequest(
                customer_id=customer_id,
                user_id=user,
                title=form.get("title", ""),
                due_at=due,
                assignee_id=form.get("assignee_id") or None,
                source=PAGE_SOURCE,
                people=state.services.people(),
            ),
        )
    assert result.task is not None
    return Notice(f"Task added: {result.task.title}.")
