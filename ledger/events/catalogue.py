"""The event catalogue: every type in the spec, its payload and its envelopes.

One place maps a type name (`task.completed`) to its contract; parsing and
JSON Schema export go through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError, create_model

from ledger.events.call import CallLogged
from ledger.events.chat import ChatMessage, ChatStarted, ChatStatusChanged
from ledger.events.common import FLOAT_SEEN, Payload
from ledger.events.customer import (
    CustomerAbsorbed,
    CustomerCardChanged,
    CustomerCreated,
    CustomerErased,
    CustomerMerged,
    CustomerNotDuplicate,
    CustomerReleased,
    CustomerUnmerged,
)
from ledger.events.email import (
    EmailBounced,
    EmailClicked,
    EmailDelivered,
    EmailOpened,
    EmailSent,
)
from ledger.events.envelope import InboundEvent, RecordedEvent
from ledger.events.file import FileAttached
from ledger.events.limits import (
    LimitError,
    check_event_shape,
    check_event_values,
    check_stored_size,
    keys_match,
)
from ledger.events.note import NoteAdded
from ledger.events.order import OrderChanged, OrderCreated
from ledger.events.segment import SegmentJoined, SegmentLeft
from ledger.events.shape import is_closed, key_count
from ledger.events.sms import SmsDelivered, SmsFailed, SmsSent
from ledger.events.task import (
    TaskCompleted,
    TaskCreated,
    TaskDeleted,
    TaskEdited,
    TaskReopened,
)
from ledger.events.visit import VisitRecorded
from ledger.upcasting import VersionError, current_json, is_current, upcast_data

PAYLOAD_CLASSES: tuple[type[Payload], ...] = (
    CustomerCreated,
    CustomerCardChanged,
    CustomerErased,
    CustomerNotDuplicate,
    CustomerMerged,
    CustomerAbsorbed,
    CustomerUnmerged,
    CustomerReleased,
    OrderCreated,
    OrderChanged,
    SegmentJoined,
    SegmentLeft,
    EmailSent,
    EmailDelivered,
    EmailOpened,
    EmailClicked,
    EmailBounced,
    SmsSent,
    SmsDelivered,
    SmsFailed,
    CallLogged,
    ChatStarted,
    ChatMessage,
    ChatStatusChanged,
    TaskCreated,
    TaskEdited,
    TaskCompleted,
    TaskReopened,
    TaskDeleted,
    NoteAdded,
    FileAttached,
    VisitRecorded,
)

PAYLOADS: dict[str, type[Payload]] = {p.type_name: p for p in PAYLOAD_CLASSES}
EVENT_TYPES: tuple[str, ...] = tuple(PAYLOADS)


def _envelope_for(base: type[Any], payload: type[Payload], suffix: str) -> type[Any]:
    name = payload.__name__ + suffix
    fields: dict[str, Any] = {}
    if base is InboundEvent:
        # A producer may name any version of the type's contract up to the current.
        version = Annotated[int, Field(ge=1, le=payload.schema_version)]
        fields["schema_version"] = (version | None, None)
    model = create_model(
        name,
        __base__=base,
        __module__=__name__,
        type=(Literal[payload.type_name], ...),  # type: ignore[arg-type]
        data=(payload, ...),
        **fields,
    )
    model.__doc__ = f"`{payload.type_name}` event, schema version {payload.schema_version}."
    return model


@dataclass(frozen=True)
class _Envelopes:
    inbound_models: dict[str, type[InboundEvent]]
    recorded_models: dict[str, type[RecordedEvent]]
    inbound_adapter: TypeAdapter[InboundEvent]
    recorded_adapter: TypeAdapter[RecordedEvent]


@cache
def _envelopes() -> _Envelopes:
    """Each type's envelope models and the validators of their unions, made on first
    use: 56 models cost more to create than a whole `ledger tab` read, which
    validates no event."""
    inbound = {t: _envelope_for(InboundEvent, p, "Event") for t, p in PAYLOADS.items()}
    recorded = {t: _envelope_for(RecordedEvent, p, "Recorded") for t, p in PAYLOADS.items()}
    # Built at run time from the catalogue, so the checker sees them as Any.
    inbound_union: Any = Annotated[
        Union[tuple(inbound.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]
    recorded_union: Any = Annotated[
        Union[tuple(recorded.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]
    return _Envelopes(inbound, recorded, TypeAdapter(inbound_union), TypeAdapter(recorded_union))


# INBOUND_MODELS, RECORDED_MODELS, INBOUND_ADAPTER, RECORDED_ADAPTER: attributes of
# this module, made on first access (PEP 562).
if TYPE_CHECKING:
    INBOUND_MODELS: dict[str, type[InboundEvent]]
    RECORDED_MODELS: dict[str, type[RecordedEvent]]
    INBOUND_ADAPTER: TypeAdapter[InboundEvent]
    RECORDED_ADAPTER: TypeAdapter[RecordedEvent]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(_envelopes(), _LAZY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LAZY = {
    "INBOUND_MODELS": "inbound_models",
    "RECORDED_MODELS": "recorded_models",
    "INBOUND_ADAPTER": "inbound_adapter",
    "RECORDED_ADAPTER": "recorded_adapter",
}


@dataclass(frozen=True)
class FieldError:
    """One reason an event was rejected: the field (a dotted path) and what is wrong with it."""

    field: str
    reason: str
    # The rule's stable name when a rule (not the contract) refused it, e.g.
    # "task_is_completed": doors map it to their own words without reading
    # `reason`. Not part of equality: the reason says the same to a person.
    code: str | None = dataclass_field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class ContractError(ValueError):
    """An event that breaks its type's schema. Carries what the producer needs
    to fix it: the type (when known) and each field with its reason."""

    def __init__(self, errors: list[FieldError], event_type: str | None = None) -> None:
        self.errors = errors
        self.event_type = event_type
        super().__init__("; ".join(str(e) for e in errors))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + part
    return path


def _field_errors(exc: ValidationError, event_type: str | None) -> list[FieldError]:
    errors: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # The discriminated union puts the type tag first; producers never wrote it.
        if loc and loc[0] == event_type:
            loc = loc[1:]
        kind = err["type"]
        if kind == "union_tag_invalid":
            field, reason = "type", f"unknown event type {err['ctx']['tag']!r}"
        elif kind == "union_tag_not_found":
            field, reason = "type", "field required"
        elif kind == "extra_forbidden":
            field, reason = _field_path(loc), "unknown field"
        elif kind == "json_invalid":
            field, reason = "(json)", f"malformed JSON: {err['ctx'].get('error', err['msg'])}"
        elif kind == "value_error":
            # Our own validators' messages, without pydantic's "Value error, " prefix.
            field, reason = _field_path(loc) or "(event)", str(err["ctx"]["error"])
        else:
            field, reason = _field_path(loc) or "(event)", err["msg"]
        errors.append(FieldError(field, reason))
    return errors


def _peek_type(obj: object) -> str | None:
    if isinstance(obj, dict):
        t = obj.get("type")
        return t if isinstance(t, str) else None
    return None


def _peek_type_raw(raw: str | bytes) -> str | None:
    try:
        return _peek_type(json.loads(raw))
    except (ValueError, RecursionError):
        return None


def parse_inbound(obj: dict[str, Any]) -> InboundEvent:
    """Validate one producer event already decoded from JSON.

    Validation runs in JSON mode, where strictness means what a producer expects:
    timestamps and UUIDs as strings, no number-to-string coercion."""
    return parse_inbound_json(json.dumps(obj))


def parse_inbound_json(raw: str | bytes) -> InboundEvent:
    """Validate one producer event from its JSON text, size limits included;
    ContractError with every field's reason if it breaks its type's contract.

    The limits the contract cannot say (`ledger.events.limits`) take a second
    decode of the text, except for a closed type (`ledger.events.shape`) sent
    plainly: there validation bounds the numbers, and counting keys tells that
    none was given twice. Whenever that cannot decide, and before any contract
    error is reported, the full check runs, so a fault is named as it always was."""
    try:
        size, text = check_event_shape(raw)
        # Naming a version may rewrite the text; an escaped NUL needs naming.
        quick = '"schema_version"' not in text and "\\u0000" not in text
        if not quick:
            check_event_values(text)
        seen: dict[str, bool] = {}
        try:
            # The adapter's validator itself: TypeAdapter.validate_json wraps it in Python.
            event: InboundEvent = _envelopes().inbound_adapter.validator.validate_json(
                raw if quick else _in_current_version(raw), context=seen
            )
        except ValidationError:
            if quick:
                check_event_values(text)
            raise
        if quick and not _checked_by_contract(event, text, seen):
            check_event_values(text)
        check_stored_size(size, event.model_dump_json)
        return event
    except LimitError as exc:
        raise ContractError([FieldError(exc.field, exc.reason)], _peek_type_raw(raw)) from None
    except ValidationError as exc:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as bad_json:
            raise ContractError([FieldError("(json)", f"malformed JSON: {bad_json}")]) from None
        if not isinstance(obj, dict):
            raise ContractError([FieldError("(event)", "must be a JSON object")]) from None
        event_type = _peek_type(obj)
        raise ContractError(_field_errors(exc, event_type), event_type) from None


def _checked_by_contract(event: InboundEvent, text: str, seen: dict[str, bool]) -> bool:
    """Whether validating `event` from `text` already checked what the full limits
    check would: a closed type, no float given for an integer, no key twice."""
    return FLOAT_SEEN not in seen and is_closed(type(event)) and keys_match(text, key_count(event))


def _in_current_version(raw: str | bytes) -> str | bytes:
    """A producer's event whose envelope names an older `schema_version` of its
    type, with `data` upcast to the current version (the text as it is when it
    names none); ContractError naming `schema_version` for an unknown version."""
    named = b'"schema_version"' in raw if isinstance(raw, bytes) else '"schema_version"' in raw
    if not named:
        return raw
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return raw  # validation says what is wrong
    if not isinstance(obj, dict) or obj.get("schema_version") is None:
        return raw  # absent or null: the current version
    event_type, version = obj.get("type"), obj["schema_version"]
    if not isinstance(event_type, str) or event_type not in PAYLOADS:
        return raw
    if isinstance(version, float) and version.is_integer():
        version = obj["schema_version"] = int(version)
    try:
        data = obj.get("data")
        if isinstance(data, dict):
            obj["data"] = upcast_data(event_type, version, data)
        else:
            upcast_data(event_type, version, {})  # checks the version
    except VersionError as exc:
        raise ContractError([FieldError("schema_version", str(exc))], event_type) from None
    return json.dumps(obj, ensure_ascii=False)


def recorded_data_unchecked(event_type: str, state: bytes) -> Payload:
    """The data of a stored event of `event_type`, in its type's current version,
    built without validation and without revealing personal values (they stay
    sealed): for a reader of the subject ids and statuses alone, which are never
    personal, that decodes thousands (loading customers' states). It was
    validated when it was appended; `parse_recorded_json` checks it again."""
    data = _trailing_data(state) if is_current(state) else None
    if data is None:
        data = json.loads(current_json(state))["data"]
    return _constructed(PAYLOADS[event_type], data)


# How the ledger writes an envelope's last key (`ledger.mapper.stored_state`).
_DATA_KEY = b',"data":'


def _trailing_data(state: bytes) -> dict[str, Any] | None:
    """The `data` object of a stored envelope whose last key it is, decoded
    alone (the envelope around it is most of the text, and loading a customer
    decodes only the data); None when that cannot be told, and the caller
    decodes the whole envelope.

    The last `,"data":` in the text is a key (a quote inside a string is
    escaped), at the top level or nested in the data itself. Only the top-level
    key's value, when it is the envelope's last, runs to the final `}` as one
    whole JSON value: a nested key's text would close the objects around it
    too, and a key after `data` would follow it, and either fails to decode."""
    at = state.rfind(_DATA_KEY)
    if at < 0 or not state.endswith(b"}"):
        return None
    try:
        data = json.loads(state[at + len(_DATA_KEY) : -1])
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _constructed(model: type[Payload], data: dict[str, Any]) -> Payload:
    """`model.model_construct(**data)`, at a quarter of its cost for the plain
    payloads (thousands of them load a customer): the instance's fields set
    straight from `data` and the model's immutable defaults."""
    plan = _construct_plan(model)
    if plan is None or not plan.required <= data.keys() <= plan.fields:
        return model.model_construct(**data)
    instance = model.__new__(model)
    values = dict(plan.defaults)
    values.update(data)
    setattr_ = object.__setattr__  # the models are frozen
    setattr_(instance, "__dict__", values)
    setattr_(instance, "__pydantic_fields_set__", set(data))
    setattr_(instance, "__pydantic_extra__", None)
    setattr_(instance, "__pydantic_private__", None)
    return instance


@dataclass(frozen=True)
class _ConstructPlan:
    fields: frozenset[str]
    required: frozenset[str]
    defaults: dict[str, Any]  # of the fields that are not required


_IMMUTABLE = (str, int, float, bool, bytes, tuple, frozenset, type(None))


@cache
def _construct_plan(model: type[Payload]) -> _ConstructPlan | None:
    """What `model_construct` does for `model`, when it only sets the fields
    given and the others' defaults; None when it does more (aliases, default
    factories, mutable defaults it copies, private attributes, a post-init
    hook, extra fields kept)."""
    if (
        model.__private_attributes__
        or model.__pydantic_post_init__
        or model.model_config.get("extra") == "allow"
    ):
        return None
    defaults: dict[str, Any] = {}
    required: set[str] = set()
    for name, info in model.model_fields.items():
        if info.alias is not None or info.default_factory is not None:
            return None
        if info.is_required():
            required.add(name)
        elif isinstance(info.default, _IMMUTABLE):
            defaults[name] = info.default
        else:
            return None
    return _ConstructPlan(frozenset(model.model_fields), frozenset(required), defaults)


def parse_recorded_json(raw: str | bytes) -> RecordedEvent:
    """Validate a stored envelope (from the events table or a Kafka message),
    in the current version of its type (ledger.upcasting)."""
    try:
        state = raw.encode() if isinstance(raw, str) else raw
        try:
            state = current_json(state)
        except VersionError as exc:
            raise ContractError(
                [FieldError("schema_version", str(exc))], _peek_type_raw(raw)
            ) from None
        return _envelopes().recorded_adapter.validate_json(state)
    except ValidationError as exc:
        event_type = None
        try:
            event_type = _peek_type(json.loads(raw))
        except ValueError:
            pass
        raise ContractError(_field_errors(exc, event_type), event_type) from None
