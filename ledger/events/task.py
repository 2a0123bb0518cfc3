from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ledger.events.common import Changes, Id, Payload, Text, Timestamp


class _TaskPayload(Payload):
    kind = "tasks"
    subject_kind = "task"
    subject_field = "task_id"

    task_id: Id


class TaskCreated(_TaskPayload):
    type_name = "task.created"
    personal = ("title", "text")
    creates_subject = True

    title: Annotated[str, Field(min_length=1, max_length=1000)]
    text: Text | None = None
    due_at: Timestamp | None = None
    assignee_id: Id | None = None


class TaskEdited(_TaskPayload):
    type_name = "task.edited"

    changes: Changes

    @classmethod
    def personal_change(cls, field: str) -> bool:
        return field in ("title", "text")


class TaskCompleted(_TaskPayload):
    type_name = "task.completed"


class TaskReopened(_TaskPayload):
    type_name = "task.reopened"


class TaskDeleted(_TaskPayload):
    type_name = "task.deleted"
