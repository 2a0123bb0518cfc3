"""Adding from the card: `POST /v1/customers/{id}/notes` and `POST
/v1/customers/{id}/tasks`, as the acting user of task actions
(`api.caller.acting_user`); 201 with the new item."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.caller import Anyone, acting_user
from api.models import Id, IdempotencyKey, NewNoteBody, NewTaskBody, UserQuery
from api.problems import problem_responses
from api.state import app_state
from services.notes import NoteRequest, add_note
from services.tabs import TaskItem, TimelineItem
from services.tasks import NewTaskRequest, add_task

router = APIRouter()

@router.post(
    "/v1/customers/{customer_id:segment}/notes",
    status_code=201,
    response_model=TimelineItem,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    tags=["tasks"],
)
def post_note(
    request: Request,
    caller: Anyone,
    customer_id: Id,
    body: NewNoteBody,
    viewer: UserQuery = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Add a note as the acting user; the answer is its timeline item. The
    note id is the server's; the same `Idempotency-Key` stores it once (422
    when the key was used for another request)."""
    state = app_state(request)
    user = acting_user(caller, viewer)
    state.ensure_ready()
    with state.pool.connection() as conn:
        result = add_note(
            state.services.app(),
            conn,
            state.services.policy(),
            NoteRequest(
                customer_id=customer_id,
                user_id=user,
                text=body.text,
                idempotency_key=idempotency_key,
                source="ledger-api",
                people=state.services.people(),
            ),
        )
    return Response(
        result.item.model_dump_json(), status_code=201, media_type="application/json"
    )


@router.post(
    "/v1/customers/{customer_id:segment}/tasks",
    status_code=201,
    response_model=TaskItem,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    tags=["tasks"],
)
def post_task(
    request: Request,
    caller: Anyone,
    customer_id: Id,
    body: NewTaskBody,
    viewer: UserQuery = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Add a task as the acting user; the answer is the task as the acting
    user's tasks tab lists it. The task id is the server's; the same
    `Idempotency-Key` stores it once (422 when the key was used for another
    request)."""
    state = app_state(request)
    user = acting_user(caller, viewer)
    state.ensure_ready()
    with state.pool.connection() as conn:
        result = add_task(
            state.services.app(),
            conn,
            state.services.policy(),
            NewTaskRequest(
                customer_id=customer_id,
                user_id=user,
                title=body.title,
                due_at=body.due_at,
                assignee_id=body.assignee_id,
                text=body.text,
                idempotency_key=idempotency_key,
                source="ledger-api",
                people=state.services.people(),
            ),
        )
    assert result.task is not None
    return Response(
        result.task.model_dump_json(), status_code=201, media_type="application/json"
    )
