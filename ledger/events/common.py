"""Building blocks shared by every event contract.

Strict on purpose: a producer that sends a number where a string belongs, an
unknown key, or a naive timestamp gets a rejection, not a silent coercion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
)

from ledger.events.limits import INT64_MAX, MAX_STRING_CHARS
from ledger.kinds import Kind

Id = Annotated[str, Field(min_length=1, max_length=128)]
CustomerId = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(max_length=100_000)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
DecimalString = Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$", max_length=64)]


# Set in a validation's context when a float was given for an integer: the
# quick limits check (ledger.events.catalogue) cannot tell whether its text was
# kept exactly, and leaves it to the full one.
FLOAT_SEEN = "float_seen"


def _integral(value: Any, info: ValidationInfo) -> Any:
    # JSON Schema's "integer" is a number with no fractional part, so 2.0 (or
    # 2e0) is one: the published contracts accept it, and so must we. 2.5 still
    # fails, and strings are never numbers.
    if isinstance(value, float):
        if isinstance(info.context, dict):
            info.context[FLOAT_SEEN] = True
        if value.is_integer():
            return int(value)
    return value


# Bounded by the stores' 64-bit integer columns.
NonNegativeInt = Annotated[int, Field(ge=0, le=INT64_MAX), BeforeValidator(_integral)]


def _within_utc_years(value: datetime) -> datetime:
    # Readers show times in UTC; a time whose UTC year leaves 1-9999 cannot be
    # converted, and would break every reader that tries. An offset is less than
    # a day, so only the first and the last year can.
    if 1 < value.year < 9999:
        return value
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time must fall within years 1-9999 in UTC") from None
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_within_utc_years)]

ActorKind = Literal["user", "system", "api", "integration"]

# Turns the `data` of one version of a type into the `data` of the next: pure,
# given a plain JSON object, returning a new one (ledger.events.versions).
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Contract(BaseModel):
    """The base of every event model: strict, frozen, no unknown fields, short strings."""

    # Every string without a limit of its own is short: the event as a whole must
    # fit one Kafka message (see ledger.events.limits). Validators are built on
    # first use: a tab read validates no event and never pays for building them.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        str_max_length=MAX_STRING_CHARS,
        defer_build=True,
    )


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
    # The current version of the type's contract, and for each older version N
    # the upcaster from N to N + 1 (docs/events.md, "Versions"): stored events
    # of older versions are read in the current shape.
    schema_version: ClassVar[int] = 1
    upcasters: ClassVar[Mapping[int, Upcaster]] = {}
    kind: ClassVar[Kind]
    # Subject kind and the payload field holding its id; None for card events,
    # whose subject is the customer itself.
    subject_kind: ClassVar[str | None] = None
    subject_field: ClassVar[str | None] = None
    # True when this type brings its subject into existence: the id is claimed
    # for this customer and must be unique across the ledger.
    creates_subject: ClassVar[bool] = False
    # Personal data (docs/privacy.md): payload fields whose values are stored
    # encrypted under the customer's key. A dict-valued field (the card) has each
    # value encrypted and its keys readable.
    personal: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def personal_change(cls, field: str) -> bool:
        """Whether `old`/`new` of a change to `field` are personal (change events)."""
        return False

    def subject_id(self) -> str | None:
        if self.subject_field is None:
            return None
        value = getattr(self, self.subject_field)
        assert isinstance(value, str)
        return value
