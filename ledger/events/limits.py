"""What every accepted event must fit: the limits of the stores, the relay and Kafka.

An event the ledger accepts is one every store, every projection, the relay,
every output format and the Kafka broker can carry. The typed fields carry
their own limits (see `ledger.events.common`); this module checks what JSON
Schema types cannot say and what lives in free-form values (a card, a change's
old and new):

- no NUL character in any string or key (PostgreSQL text and jsonb refuse it);
- integers within 64 bits (PostgreSQL bigint, SQLite INTEGER);
- numbers finite and kept exactly as sent: a decimal that a 64-bit float cannot
  hold (`1e999`, `0.1000000000000000000001`) would be stored as something else,
  so it is rejected and the producer sends it as a string;
- no key given twice in one object (JSON parsers would keep one silently);
- nesting at most MAX_DEPTH deep, and the event at most MAX_EVENT_BYTES of JSON.

The common case costs one C-level decode with hooks; only a rejected event is
walked again to name the field at fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# An event's JSON as sent. The stored envelope adds under 200 bytes to it, and the
# relay's Kafka message under 200 more; see MAX_STORED_BYTES for the hard bound.
MAX_EVENT_BYTES = 256 * 1024
# The stored envelope, checked at append: the relay's message must stay under the
# broker's default message.max.bytes (1 MiB), with room for key, headers and the
# record batch's own overhead.
MAX_STORED_BYTES = 1024 * 1024 - 64 * 1024
# Objects and arrays inside one event, the envelope itself being level 1.
MAX_DEPTH = 32
# Every string field without a limit of its own (see Contract's str_max_length).
MAX_STRING_CHARS = 1000

# An escaped NUL: `\u0000` preceded by an even number of backslashes.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# Strings (skipped whole) and brackets, for measuring depth without recursion.
_DEPTH_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class LimitError(ValueError):
    """One value beyond a limit: the field's path (as `data.card.x[0]`) and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class _Bad(Exception):
    """Raised from a decoder hook: the fast check found something, walk to name it."""


def _check_int(text: str) -> int:
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Bad
    return value


def _check_float(text: str) -> float:
    value = float(text)
    if not _float_keeps(text, value):
        raise _Bad
    return value


def _float_keeps(text: str, value: float) -> bool:
    # Stored JSON writes the shortest text that reads back as the same float, so
    # the number is kept exactly when that text has the value that was sent.
    return value - value == 0 and Decimal(repr(value)) == Decimal(text)


def _reject_constant(text: str) -> Any:
    raise _Bad


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Bad
    return obj


_JSON_SPACE = " \t\n\r"
# One decoder, built once: json.loads with hooks builds a new one per call.
_checking_decoder = json.JSONDecoder(
    object_pairs_hook=_unique_pairs,
    parse_int=_check_int,
    parse_float=_check_float,
    parse_constant=_reject_constant,
)


def check_event_json(raw: str | bytes) -> int:
    """Raise LimitError naming the first field of `raw` beyond a limit; else
    return its size in bytes.

    Malformed JSON is left to the contract's own parser, which says where."""
    size, text = check_event_shape(raw)
    check_event_values(text)
    return size


def check_event_shape(raw: str | bytes) -> tuple[int, str]:
    """The cheap part of `check_event_json`: the event's size and nesting depth.
    Returns the size in bytes and the event as text."""
    if isinstance(raw, bytes) or raw.isascii():  # isascii: a flag, no scan
        size = len(raw)
    else:
        size = len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_EVENT_BYTES:
        raise LimitError(
            "(event)", f"{size:,} bytes of JSON; an event may have at most {MAX_EVENT_BYTES:,}"
        )
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise LimitError("(event)", f"nested deeper than {MAX_DEPTH} levels of objects and arrays")
    return size, text


def check_event_values(text: str) -> None:
    """The rest of `check_event_json`, one decode of `text`: NUL characters,
    numbers and keys given twice."""
    # A plain substring test first: the regex (which skips `\\u0000`) is slower.
    fault = "\\u0000" in text and _NUL_ESCAPE.search(text) is not None
    try:
        # raw_decode: decode() would match whitespace twice around it with regexes.
        start = len(text) - len(text.lstrip(_JSON_SPACE)) if text[:1] in _JSON_SPACE else 0
        _, end = _checking_decoder.raw_decode(text, start)
    except _Bad:
        fault = True
    except (ValueError, RecursionError):
        return
    else:
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            return  # data after the value: malformed, as decode() would find
    if fault:
        _name_the_fault(text)


# Whitespace between a key and its colon: such a key's `":` is not counted.
_SPACED_COLON = re.compile(r'"[ \t\r\n]+:')


def keys_match(text: str, keys: int) -> bool:
    """Whether the JSON `text`, which validated as models holding `keys` distinct
    keys (see `ledger.events.shape`), gives no key twice; False when it cannot
    tell cheaply, and the full check (`check_event_values`) decides.

    A key followed at once by its colon ends in `":`, and `":` can also occur
    inside a string, never less often. With no whitespace before any key's
    colon, `":` occurs at least once per key given, and the keys given are at
    least `keys`: when it occurs exactly `keys` times, no key was given twice."""
    return text.count('":') == keys and _SPACED_COLON.search(text) is None


# Stored JSON is at most this many times longer than what was sent: strings never
# grow (pydantic escapes no more than JSON requires), but numbers can (`1e15`
# is stored as `1000000000000000.0`). Below this ratio no encoding is needed.
_MAX_GROWTH = 5
# What the ledger adds to the stored envelope (event_id, recorded_at, schema_version).
_STORED_OVERHEAD = 1024


def check_stored_size(sent_bytes: int, dump_json: Callable[[], str]) -> None:
    """Raise LimitError when the stored envelope would not fit MAX_STORED_BYTES.

    `dump_json` serialises the validated event; it is called only for events
    large enough to matter."""
    if sent_bytes * _MAX_GROWTH + _STORED_OVERHEAD <= MAX_STORED_BYTES:
        return
    size = len(dump_json().encode("utf-8", "surrogatepass")) + _STORED_OVERHEAD
    if size > MAX_STORED_BYTES:
        raise LimitError(
            "(event)",
            f"stored as {size:,} bytes of JSON; an event may take at most "
            f"{MAX_STORED_BYTES:,} (one Kafka message)",
        )


def _depth(text: str) -> int:
    depth = deepest = 0
    for m in _DEPTH_TOKEN.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


class _Num:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _name_the_fault(text: str) -> None:
    try:
        tree = json.loads(
            text, object_pairs_hook=list, parse_int=_Num, parse_float=_Num, parse_constant=_Num
        )
    except (ValueError, RecursionError):
        return  # malformed after the fault (data after the value): the contract's parser says so
    fault = _walk(tree, "")
    if fault is not None:
        raise LimitError(*fault)


def _walk(value: Any, path: str) -> tuple[str, str] | None:
    where = path or "(event)"
    if isinstance(value, str):
        return (where, "contains a NUL character") if "\x00" in value else None
    if isinstance(value, _Num):
        return _number_fault(value.text, where)
    if isinstance(value, list) and (not value or isinstance(value[0], tuple)):
        # An object, decoded as its list of pairs (object_pairs_hook=list).
        seen: set[str] = set()
        for key, item in value:
            inner = f"{path}.{key}" if path else key
            if "\x00" in key:
                return (f"{path or '(event)'}", f"key {_shown(key)} contains a NUL character")
            if key in seen:
                return (inner, "key given more than once in the same object")
            seen.add(key)
            fault = _walk(item, inner)
            if fault is not None:
                return fault
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            fault = _walk(item, f"{path}[{i}]")
            if fault is not None:
                return fault
    return None


def _number_fault(text: str, where: str) -> tuple[str, str] | None:
    if text in ("NaN", "Infinity", "-Infinity"):
        return (where, f"{text} is not a JSON number; numbers must be finite")
    if not any(c in text for c in ".eE"):
        if INT64_MIN <= int(text) <= INT64_MAX:
            return None
        return (where, "integer outside the 64-bit range; send it as a string")
    value = float(text)
    if value - value != 0:
        return (where, f"number {_shown(text)} is too large; numbers must be finite")
    if not _float_keeps(text, value):
        return (
            where,
            f"number {_shown(text)} cannot be kept exactly (a 64-bit float would store "
            f"{value!r}); send it as a string",
        )
    return None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
