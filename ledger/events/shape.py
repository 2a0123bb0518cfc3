"""What the append path's quick limits check needs to know of a contract's shape.

`ledger.events.limits` decodes every event's JSON a second time to find what
pydantic cannot: a key given twice, an integer beyond 64 bits, a number a float
cannot keep. For most types the validated model already tells: a type is
*closed* when every JSON object in it is a contract model (no `dict`, no `Any`),
every integer is bounded within 64 bits by its own `ge`/`le`, and no field is a
float. Then the keys pydantic saw can be counted (`key_count`) and compared with
the raw text (`limits.keys_match`), and the numbers were bounded by validation
itself; see `ledger.events.catalogue.parse_inbound_json`. Any other type takes
the full check, as does anything the quick check cannot decide.
"""

from __future__ import annotations

import types
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

from annotated_types import Ge, Le
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from ledger.events.limits import INT64_MAX, INT64_MIN

# JSON strings, booleans and null: nothing in them the full check looks at but
# NUL characters, which the quick check rules out on the text.
_SCALARS: tuple[Any, ...] = (str, bool, type(None), UUID, datetime, AwareDatetime)


def int_is_bounded(metadata: list[Any]) -> bool:
    """Whether constraints `metadata` (a field's, or an `Annotated`'s) keep an int
    within the stores' 64 bits: validation then refuses what the full check would."""
    lows = [m.ge for m in metadata if isinstance(m, Ge)]
    highs = [m.le for m in metadata if isinstance(m, Le)]
    return any(low >= INT64_MIN for low in lows) and any(high <= INT64_MAX for high in highs)


def _constraints(metadata: tuple[Any, ...] | list[Any]) -> list[Any]:
    # `Field(ge=...)` inside an `Annotated` carries its constraints as metadata.
    out: list[Any] = []
    for m in metadata:
        out.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return out


def _closed_type(tp: Any, metadata: list[Any]) -> bool:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Annotated:
        return _closed_type(args[0], [*metadata, *_constraints(tp.__metadata__)])
    if origin in (Union, types.UnionType):
        return all(_closed_type(a, metadata if a is not type(None) else []) for a in args)
    if origin is Literal:
        return all(isinstance(a, str | bool) for a in args)
    if origin is list:
        return _closed_type(args[0], [])
    if tp is int:
        return int_is_bounded(metadata)
    if tp in _SCALARS:
        return True
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return is_closed(tp)
    return False  # dict, Any, float, anything else: the full check decides


@cache
def is_closed(model: type[BaseModel]) -> bool:
    """Whether `model` is closed (see the module docstring)."""
    return all(
        _closed_type(f.annotation, _constraints(f.metadata)) for f in model.model_fields.values()
    )


def _holds_model(tp: Any) -> bool:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return True
    return any(_holds_model(a) for a in get_args(tp))


@cache
def _nested(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` that can hold a model (or a list of them)."""
    return tuple(n for n, f in model.model_fields.items() if _holds_model(f.annotation))


def key_count(model: BaseModel) -> int:
    """How many keys the JSON a closed model was validated from held, each
    counted once: the fields it set, and those of every model inside it."""
    # The attribute behind `model_fields_set`: this runs for every appended event.
    n = len(model.__pydantic_fields_set__)
    for name in _nested(type(model)):
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            # A model holding none (an actor, most payloads) without a call.
            inner = _nested(type(value))
            n += key_count(value) if inner else len(value.__pydantic_fields_set__)
        elif isinstance(value, list):
            n += sum(key_count(v) for v in value if isinstance(v, BaseModel))
    return n
