"""Making stored text safe to show: on a terminal, and in a spreadsheet.

Stored values come from producers. Shown raw, an escape sequence in an actor's
name rewrites the screen and `\\r\\n` forges a line; in a CSV opened by a
spreadsheet, a cell starting with `=` runs as a formula. Every human output
goes through `printable`; every CSV cell through `spreadsheet_cell`.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode controls that reorder or break lines.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# What a spreadsheet reads as the start of a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character shown as its escape (`\\x1b`, `\\u202e`)."""
    return _CONTROL.sub(_escape, text)


def spreadsheet_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text: a leading `'` before anything it
    would take for a formula (numbers, negative ones included, stay numbers)."""
    if value.startswith(_FORMULA_START) and _NUMBER.fullmatch(value) is None:
        return "'" + value
    return value


def one_line(exc: BaseException) -> str:
    """An exception as one line for the user, all of it: its lines (a driver's
    reason, then its hint) as sentences of one line."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines()]
    parts = [line for line in lines if line]
    if not parts:
        return type(exc).__name__
    ended = [p if p.endswith((".", ":", ";", ",", "?", "!")) else p + "." for p in parts[:-1]]
    return " ".join([*ended, parts[-1]])


def first_line(exc: BaseException) -> str:
    """An exception as one line for the user (drivers often add SQL context lines)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
