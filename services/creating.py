"""Creating a customer's note or task from a door (the card page, `POST
/v1/customers/{id}/notes` and `.../tasks`, `ledger note add`, `ledger task
add`): the server picks the ids, builds the event with the acting user as its
actor and appends it like any other event. `services.notes.add_note` and
`services.tasks.add_task` say what is created; this module how."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ledger.db import Connection
from ledger.input import InputItem
from ledger.lookups import states_by_event_id
from ledger.people import EMPTY, Directory
from ledger.reading import position_of
from ledger.rights import RightsPolicy
from projections import registry
from projections.sealing import revealing
from projections.timeline import timeline_item

if TYPE_CHECKING:
    from ledger.application import LedgerApplication

from services.appending import append_items, keyed_event_id, rejected_fields
from services.errors import Category, RejectedField, ServiceError, service_errors
from services.freshness import catch_up

# As for task actions (services.tasks): a key becomes the event id in this
# namespace, and the new subject's id is made from the event id, so a retry
# names the same note or task and is stored at most once.
_IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://interaction-ledger/create")


@dataclass(frozen=True)
class NewSubject:
    """What to create: the event type, the subject's id field and id prefix,
    the data besides the id (None values left out), and by whom."""

    customer_id: str
    user_id: str
    event_type: str  # "note.added", "task.created"
    subject_field: str  # "note_id", "task_id"
    prefix: str  # of the subject's id: "note", "task"
    data: dict[str, Any]
    idempotency_key: str | None = None
    source: str = "ledger"
    # Names the people of the answer, as the tabs do (`services.people`).
    people: Directory = EMPTY


@dataclass(frozen=True)
class Created:
    """The stored event as the timeline lists it (personal values revealed),
    the new subject's id, and whether this request stored it."""

    item: dict[str, Any]
    subject_id: str
    stored: bool  # False when the idempotency key had already stored it


def create(
    app: LedgerApplication, conn: Connection, policy: RightsPolicy, new: NewSubject
) -> Created:
    """Store `new`'s event (checked by the contracts and the domain as any
    appended event) and answer it. With an idempotency key every request gets
    the event the key stored; the key reused for another customer, kind or
    content is refused (REJECTED)."""
    key = new.idempotency_key
    event_id = (
        keyed_event_id(_IDEMPOTENCY_NAMESPACE, new.user_id, key) if key else str(uuid.uuid4())
    )
    subject_id = f"{new.prefix}-{event_id}"
    if key is not None:
        earlier = _earlier(conn, new, event_id, subject_id)
        if earlier is not None:
            return earlier
    try:
        stored = _store(app, policy, new, event_id, subject_id)
    except ServiceError as refused:
        if key is None or refused.category in (Category.UNAVAILABLE, Category.USAGE):
            raise
        # Another request with the key may have stored its event since we looked.
        earlier = _earlier(conn, new, event_id, subject_id)
        if earlier is None:
            raise
        return earlier
    item = _item(conn, event_id, new.people)
    if item is None:  # stored, then gone: cannot happen to an append-only table
        raise ServiceError(Category.CONFLICT, f"the stored event {event_id} is not found")
    return Created(item, subject_id, stored)


def _store(
    app: LedgerApplication, policy: RightsPolicy, new: NewSubject, event_id: str, subject_id: str
) -> bool:
    """Append the event; False if an identical one was stored already."""
    with service_errors():
        if not app.customer(new.customer_id).exists:
            raise ServiceError(
                Category.NOT_FOUND, f"no customer {new.customer_id!r}", code="customer_missing"
            )
        event = {
            "event_id": event_id,
            "type": new.event_type,
            "customer_id": new.customer_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "actor": {"kind": "user", "id": new.user_id},
            "source": new.source,
            "data": {new.subject_field: subject_id, **new.data},
        }
        report = append_items(app, policy, [InputItem(0, json.dumps(event, ensure_ascii=False))])
    if report.rejected:
        errors = rejected_fields(report)
        reason = "; ".join(f"{e.field}: {e.reason}" for e in errors)
        if any(e.field == "actor.id" for e in errors):
            raise ServiceError(Category.FORBIDDEN, reason, errors)
        if any(e.code == "customer_erased" for e in errors):
            raise ServiceError(Category.CONFLICT, reason, errors)
        raise ServiceError(Category.REJECTED, reason, errors, code=_code(errors))
    return report.appended == 1


def _code(errors: list[RejectedField]) -> str:
    """A rule's code, or `invalid` for a value its contract refuses."""
    return next((e.code for e in errors if e.code), "invalid")


def _item(conn: Connection, event_id: str, people: Directory) -> dict[str, Any] | None:
    """The timeline's item of the stored event, the read models caught up first
    and its people named as the timeline tab names them."""
    from services.people import name_people

    with service_errors():
        position = position_of(conn, event_id)
        if position is None:
            return None
        catch_up(conn, [registry.get("timeline"), registry.get("people")])
        item = timeline_item(revealing(conn), position)  # summaries are stored sealed
    if item is not None:
        name_people(conn, [item], people)
    return item


def _earlier(conn: Connection, new: NewSubject, event_id: str, subject_id: str) -> Created | None:
    """The answer from the event the key stored, or None; REJECTED when it
    stored something else than `new` asks for."""
    with service_errors():
        state = states_by_event_id(conn, [event_id]).get(event_id)
    if state is None:
        return None
    # The customer is no personal value: the stored JSON says it without the keys.
    customer_id = json.loads(state).get("customer_id")
    item = _item(conn, event_id, new.people)
    if item is None:
        return None
    data = item["data"] if isinstance(item.get("data"), dict) else {}
    same = (
        item["type"] == new.event_type
        and data.get(new.subject_field) == subject_id
        and _same_data(data, new.data)
        and customer_id == new.customer_id
    )
    if not same:
        reason = (
            f"this idempotency key of user {new.user_id!r} was used for another request; "
            "a retry must repeat the same request, a new one needs a new key"
        )
        error = RejectedField(0, event_id, new.event_type, "idempotency_key", reason, "key_reused")
        raise ServiceError(Category.REJECTED, reason, [error])
    return Created(item, subject_id, False)


def _same_data(stored: dict[str, Any], given: dict[str, Any]) -> bool:
    """Whether the stored data says what `given` does (times as instants)."""
    for name in set(stored) | set(given):
        if name in ("note_id", "task_id"):
            continue
        a, b = stored.get(name), given.get(name)
        if name.endswith("_at") and isinstance(a, str) and isinstance(b, str):
            try:
                if datetime.fromisoformat(a) == datetime.fromisoformat(b):
                    continue
            except ValueError:
                pass
        if a != b:
            return False
    return True
