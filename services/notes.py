"""Adding a note to a customer from a door (`POST /v1/customers/{id}/notes`,
`ledger note add`, the card page's "Add note")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledger.db import Connection
from ledger.people import EMPTY, Directory
from ledger.rights import RightsPolicy

if TYPE_CHECKING:
    from ledger.application import LedgerApplication
    from projections.models import TimelineItem

from services.creating import NewSubject, create


@dataclass(frozen=True)
class NoteRequest:
    """A note a user adds to a customer; an idempotency key stores it at most once."""

    customer_id: str
    user_id: str  # the acting user, the event's actor
    text: str
    idempotency_key: str | None = None
    source: str = "ledger"
    people: Directory = EMPTY  # names the answer's people, as the tabs do


@dataclass(frozen=True)
class NoteAdded:
    """The note as the timeline lists it, and whether this request stored it."""

    item: TimelineItem
    stored: bool


def add_note(
    app: LedgerApplication, conn: Connection, policy: RightsPolicy, request: NoteRequest
) -> NoteAdded:
    """Store `note.added` with a note id of the server's, as `request.user_id`,
    through the append every event takes; answer its timeline item."""
    from projections.models import TimelineItem

    created = create(
        app,
        conn,
        policy,
        NewSubject(
            customer_id=request.customer_id,
            user_id=request.user_id,
            event_type="note.added",
            subject_field="note_id",
            prefix="note",
            data={"text": request.text},
            idempotency_key=request.idempotency_key,
            source=request.source,
            people=request.people,
        ),
    )
    return NoteAdded(TimelineItem.model_validate(created.item), created.stored)
