from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ledger.events.common import Id, Payload


class NoteAdded(Payload):
    type_name = "note.added"
    personal = ("text",)
    kind = "notes"
    subject_kind = "note"
    subject_field = "note_id"

    note_id: Id
    text: Annotated[str, Field(min_length=1, max_length=100_000)]
