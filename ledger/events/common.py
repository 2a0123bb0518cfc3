"""Building blocks shared by every event contract.

Strict on purpose: a producer that sends a number where a string belongs, an
unknown key, or a naive timestamp gets a rejection, not a silent coercion.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Id = Annotated[str, Field(min_length=1, max_length=128)]
CustomerId = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(max_length=100_000)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
DecimalString = Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$", max_length=64)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Timestamp = AwareDatetime

ActorKind = Literal["user", "system", "api", "integration"]

# Timeline kinds, as the spec's timeline filter names them.
Kind = Literal[
    "calls",
    "emails",
    "sms",
    "chats",
    "visits",
    "orders",
    "segments",
    "tasks",
    "notes",
    "files",
    "card",
]
KINDS: tuple[str, ...] = (
    "calls",
    "emails",
    "sms",
    "chats",
    "visits",
    "orders",
    "segments",
    "tasks",
    "notes",
    "files",
    "card",
)


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Actor(Contract):
    kind: ActorKind
    id: Id
    name: str | None = None


class Change(Contract):
    field: Annotated[str, Field(min_length=1, max_length=256)]
    old: Any
    new: Any


Changes = Annotated[list[Change], Field(min_length=1)]


class Payload(Contract):
    """The `data` of one event type.

    Class variables describe the type to the rest of the ledger: its name in the
    catalogue, the schema version stored with it, the timeline kind, and the
    subject (the order, task, dialogue, ... it is about) so the write model,
    the audit index and the read models agree on one definition.
    """

    type_name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    kind: ClassVar[str]
    # Subject kind and the payload field holding its id; None for card events,
    # whose subject is the customer itself.
    subject_kind: ClassVar[str | None] = None
    subject_field: ClassVar[str | None] = None
    # True when this type brings its subject into existence: the id is claimed
    # for this customer and must be unique across the ledger.
    creates_subject: ClassVar[bool] = False

    def subject_id(self) -> str | None:
        if self.subject_field is None:
            return None
        value = getattr(self, self.subject_field)
        assert isinstance(value, str)
        return value
