"""The JSON endpoints' request and response models, and the path and query
parameters several routes share (the OpenAPI document is generated from them).
The tabs' answers are the service layer's models (`services.tabs`).

The models carry comments, not docstrings: a docstring would become the
schema's `description` in the published document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header, Path, Query
from pydantic import BaseModel, Field

# The `{name:segment}` convertor the routes' id paths use, registered on import.
import api.segments  # noqa: F401
from api.problems import MAX_REPORTED_ERRORS, RejectedEvent
from services.merging import MAX_ABSORBED

# Path ids: the event contracts' Id bounds, and no control characters (a NUL
# would reach the database).
Id = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
UserQuery = Annotated[
    str | None,
    Query(
        alias="as",
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="tasks: the user whose rights decide the actions (default: the key's user)",
    ),
]
# A retry's key: printable ASCII, as HTTP header values safely are.
IdempotencyKey = Annotated[
    str | None, Header(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")
]


# What `POST /v1/events` stored, and why events were rejected.
class AppendResult(BaseModel):
    appended: int
    duplicates: int
    rejected: list[RejectedEvent]
    rejected_omitted: int = Field(
        default=0,
        ge=0,
        description=f"Reasons left out of `rejected` (at most {MAX_REPORTED_ERRORS} "
        "are listed, those of the first events rejected).",
    )
    first_position: int | None
    last_position: int | None


# One field a task edit sets.
class Change(BaseModel):
    field: str = Field(min_length=1, max_length=256)
    new: Any


# A task action's body: an edit's changes (none for the other actions).
class TaskActionBody(BaseModel):
    changes: list[Change] = Field(default_factory=list)


# Stored as event data: PostgreSQL text and jsonb cannot hold NUL, so no
# accepted string has one (also the pattern the OpenAPI document gives them).
NO_NUL = r"^[^\x00]*$"


# A note to add (`POST /v1/customers/{id}/notes`); the server picks its id.
class NewNoteBody(BaseModel):
    text: str = Field(min_length=1, max_length=100_000, pattern=NO_NUL)


# A task to add (`POST /v1/customers/{id}/tasks`); the server picks its id.
class NewTaskBody(BaseModel):
    title: str = Field(min_length=1, max_length=1000, pattern=NO_NUL)
    due_at: str | None = Field(
        default=None, max_length=64, description="RFC 3339 with a zone, or YYYY-MM-DD (UTC)."
    )
    assignee_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=NO_NUL)
    text: str | None = Field(default=None, max_length=100_000, pattern=NO_NUL)


# Why a customer is erased, and at whose request.
class EraseBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL)
    # Who asked (the data subject's request, a DPO); default: the key's user or name.
    requested_by: str | None = Field(default=None, min_length=1, max_length=256, pattern=NO_NUL)


# An erasure's outcome.
class Erased(BaseModel):
    customer_id: str
    erased: bool  # false: it already was, and nothing changed
    position: int | None


# The answer of a task deletion.
class Deleted(BaseModel):
    deleted: Literal[True] = True


# The head of the hash chain.
class Anchor(BaseModel):
    position: int
    hash: str


# The ledger's head and each read model's position, lag and state.
class ProjectionsStatus(BaseModel):
    head: int
    projections: list[dict[str, Any]]


# A probe's answer.
class Health(BaseModel):
    status: str


# A customer a search found, and what of it the query matched.
class FoundCustomer(BaseModel):
    customer_id: str
    name: str | None  # the card's current name
    matched: Literal["id", "phone", "email", "name"]


# One page of a customer search, in customer id order (`ledger customers find`).
class CustomerSearchAnswer(BaseModel):
    query: str
    items: list[FoundCustomer]
    next_cursor: str | None  # the next page's `cursor`; null on the last page
    limit: int


# Why two customers look like one: the shared card field, its value masked.
class DuplicateReason(BaseModel):
    field: Literal["phone", "email"]
    value: str


# A possible duplicate of a customer.
class DuplicateCandidate(BaseModel):
    customer_id: str
    name: str | None  # the card's current name
    reasons: list[DuplicateReason]


# A customer's possible duplicates (`ledger customers duplicates ID`).
class DuplicatesAnswer(BaseModel):
    customer_id: str
    items: list[DuplicateCandidate]


# A "not a duplicate" mark of the path's customer and `customer_id`, or (withdraw)
# its withdrawal.
class NotDuplicateBody(BaseModel):
    customer_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL)
    withdraw: bool = False


# What a mark stored: the streams it was recorded on, and whether the pair is marked.
class NotDuplicateAnswer(BaseModel):
    customer_id: str
    other_customer_id: str
    marked: bool
    recorded_on: list[str]


# A customer id in a body: the event contracts' bounds, no control characters.
BodyCustomerId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _keys_without_nul(schema: dict[str, Any]) -> None:
    # Pydantic gives a pattern on a dict's keys as patternProperties, which leaves
    # any other key (and any value under it) valid: as propertyNames instead.
    (value,) = schema.pop("patternProperties").values()
    schema["additionalProperties"] = value
    schema["propertyNames"]["pattern"] = NO_NUL


# A merge of the customers `absorb` into the path's (priority) customer, or its
# preview (`dry_run`).
class MergeBody(BaseModel):
    absorb: list[BodyCustomerId] = Field(
        min_length=1,
        max_length=MAX_ABSORBED,
        # Each customer once (the server answers 409 `listed_twice` otherwise).
        json_schema_extra={"uniqueItems": True},
        description="The customers merged into the path's customer.",
    )
    reason: str = Field(
        default="",
        max_length=1000,
        pattern=NO_NUL,
        description="Why they are one person; stored. Needed unless `dry_run` "
        "(400 `reason_missing` when empty or blank).",
    )
    keep: dict[
        Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)], BodyCustomerId
    ] = Field(
        default_factory=dict,
        max_length=100,
        json_schema_extra=_keys_without_nul,
        description="Per card field whose values differ, the customer whose value stays "
        "(default: the path's customer's). A field no card of the merge has, or a "
        "customer not in it or without that field, is 400.",
    )
    dry_run: bool = Field(default=False, description="Preview only: nothing is stored.")
    confirm: bool = Field(
        default=False,
        description="Merge customers that share no phone number or e-mail address "
        "with the path's customer (409 `confirmation_needed` otherwise).",
    )


# A card field the merged customers hold different values of: customer id -> value.
class MergeConflict(BaseModel):
    field: str
    values: dict[str, Any]


# A merge's preview or result (`ledger customers merge --format json`).
class MergeAnswer(BaseModel):
    customer_id: str
    absorbed: list[str]
    card: dict[str, Any]  # the card the merge leads to
    moved: dict[str, int]  # per tab, the items the absorbed customers bring
    conflicts: list[MergeConflict]
    needs_confirmation: bool
    confirmation_reason: str | None
    applied: bool  # false: a preview, nothing stored


# The undo of the merge of `customer_id` into the path's customer.
class UnmergeBody(BaseModel):
    customer_id: BodyCustomerId = Field(
        description="The customer merged into the path's customer, released again."
    )
    reason: str = Field(min_length=1, max_length=1000, pattern=NO_NUL)


# What an undo stored.
class UnmergeAnswer(BaseModel):
    customer_id: str
    released: str
    applied: Literal[True]
