"""Task actions: `POST /v1/customers/{id}/tasks/{task_id}/{action}` (complete,
reopen, delete, edit) as the acting user (`api.caller.acting_user`)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from api.caller import Anyone, acting_user
from api.models import Deleted, Id, IdempotencyKey, TaskActionBody, UserQuery
from api.problems import problem_responses
from api.state import app_state
from services.tabs import TaskItem
from services.tasks import FieldChange, TaskActionRequest, task_action

router = APIRouter()


@router.post(
    "/v1/customers/{customer_id:segment}/tasks/{task_id:segment}/{action}",
    response_model=TaskItem | Deleted,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    tags=["tasks"],
)
def act_on_task(
    request: Request,
    caller: Anyone,
    customer_id: Id,
    task_id: Id,
    action: Literal["complete", "reopen", "delete", "edit"],
    body: TaskActionBody | None = None,
    viewer: UserQuery = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Complete, reopen, delete or edit a task as the acting user. The
    server builds the event from the task's current state; the domain
    checks it as any appended event. The same `Idempotency-Key` stores the
    action once and answers every request with it as the first (422 when
    the key was used for another action, task or changes)."""
    state = app_state(request)
    user = acting_user(caller, viewer)
    changes = tuple(FieldChange(c.field, c.new) for c in (body.changes if body else []))
    state.ensure_ready()
    with state.pool.connection() as conn:
        result = task_action(
            state.services.app(),
            conn,
            state.services.policy(),
            TaskActionRequest(
                customer_id=customer_id,
                task_id=task_id,
                action=action,
                user_id=user,
                changes=changes,
                idempotency_key=idempotency_key,
                source="ledger-api",
                people=state.services.people(),
            ),
        )
    answer: BaseModel = result.task if result.task is not None else Deleted()
    return Response(answer.model_dump_json(), media_type="application/json")
