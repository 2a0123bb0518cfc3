"""Reading producer input: NDJSON or one JSON array, from a file or stdin, streamed.

Yields each event's raw JSON text with the line it starts on, so a rejection can
name its line. Neither format is loaded whole: NDJSON goes line by line; an
array is split into its elements by a scanner that reads each character once
(strings and nesting tracked, nothing decoded), so one huge element costs what
it costs as an NDJSON line. The elements are validated as events later, which
is where malformed JSON and too-deep nesting are rejected with their line.
Whatever would be silently dropped is an error: data after the array, a
trailing comma. A UTF-8 byte order mark is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

READ_CHUNK = 1 << 16
_BOM = "\ufeff"
# Outside strings: what changes the scanner's state. Inside: the end or an escape.
_STRUCTURAL = re.compile(r'[\[\]{},"]')
_IN_STRING = re.compile(r'["\\]')
_NON_SPACE = re.compile(r"[^ \t\r\n]")


@dataclass(frozen=True)
class InputItem:
    """One event of the input, as raw JSON text, and the line it starts on."""

    line: int
    raw: str


class InputError(ValueError):
    """The input as a whole cannot be read (not one of the two formats)."""


def read_items(stream: IO[str]) -> Iterator[InputItem]:
    """The events of an input stream, either a JSON array or NDJSON (told by the first
    character), read in chunks so memory stays flat however long the input."""
    first = _skip_whitespace(stream)
    if first is None:
        return
    ch, line, rest = first
    if ch == "[":
        yield from _array_items(stream, rest, line)
    else:
        yield from _ndjson_items(stream, ch + rest, line)


def _skip_whitespace(stream: IO[str]) -> tuple[str, int, str] | None:
    line = 1
    first = True
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            return None
        if first and chunk.startswith(_BOM):
            chunk = chunk[1:]
        first = False
        stripped = chunk.lstrip()
        line += chunk[: len(chunk) - len(stripped)].count("\n")
        if stripped:
            return stripped[0], line, stripped[1:]


def _ndjson_items(stream: IO[str], head: str, line: int) -> Iterator[InputItem]:
    # `head` is the rest of the first chunk: finish its partial last line from the stream.
    lines = head.split("\n")
    tail = lines.pop()
    for text in lines:
        if text.strip():
            yield InputItem(line, text)
        line += 1
    tail += stream.readline()
    for text in _chain_lines(tail, stream):
        if text.strip():
            yield InputItem(line, text.rstrip("\n"))
        line += 1


def _chain_lines(first: str, stream: IO[str]) -> Iterator[str]:
    if first:
        yield first
    # Not `yield from stream`: closing this generator would then close the
    # stream, which is the caller's (stdin, possibly detached by then).
    for text in stream:  # noqa: UP028
        yield text


def _array_items(stream: IO[str], chunk: str, line: int) -> Iterator[InputItem]:
    """The elements of a JSON array whose '[' has been read; `chunk` follows it."""
    depth = 0  # nesting inside the current element
    in_string = escaped = False
    element: list[str] | None = None  # pieces of the current element, once started
    start = 0  # where the current element starts in `chunk`
    start_line = line
    expect_value = True
    after_comma = False
    while True:
        pos, end = 0, len(chunk)
        while pos < end:
            if element is None:
                # Between elements: whitespace, then ',' or ']' or a value.
                m = _NON_SPACE.search(chunk, pos)
                if m is None:
                    line += chunk.count("\n", pos)
                    break
                line += chunk.count("\n", pos, m.start())
                pos = m.start()
                ch = chunk[pos]
                if ch == "]":
                    if after_comma:
                        raise InputError(f"line {line}: trailing ',' before ']' in JSON array")
                    _expect_end(stream, chunk[pos + 1 :], line)
                    return
                if ch == ",":
                    if expect_value:
                        raise InputError(f"line {line}: unexpected ',' in JSON array")
                    expect_value = after_comma = True
                    pos += 1
                    continue
                if not expect_value:
                    raise InputError(f"line {line}: expected ',' or ']' in JSON array")
                element, start, start_line = [], pos, line
            if in_string:
                if escaped:
                    escaped = False
                    pos += 1
                    continue
                m = _IN_STRING.search(chunk, pos)
                if m is None:
                    break
                pos = m.end()
                if m.group() == "\\":
                    escaped = True
                    continue
                in_string = False
                if depth > 0:
                    continue  # a string inside the element; at depth 0 it is the element
            else:
                m = _STRUCTURAL.search(chunk, pos)
                if m is None:
                    break
                ch = m.group()
                pos = m.end()
                if ch == '"':
                    in_string = True
                    continue
                if ch in "[{":
                    depth += 1
                    continue
                if depth > 0:
                    if ch == ",":
                        continue
                    depth -= 1
                    if depth > 0:
                        continue
                else:
                    # A separator ends a bare value (a number, true, ...): leave it
                    # for the top of the loop.
                    pos = m.start()
            # The element ends at `pos`; what follows must be ',' or ']'.
            element.append(chunk[start:pos])
            raw = "".join(element)
            yield InputItem(start_line, raw.strip())
            line = start_line + raw.count("\n")
            element = None
            expect_value = after_comma = False
        if element is not None:
            element.append(chunk[start:])
            start = 0
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            raise InputError(f"line {line}: JSON array is not closed with ']'")


def _expect_end(stream: IO[str], rest: str, line: int) -> None:
    """Only whitespace may follow the array: anything else would be dropped unread."""
    while True:
        m = _NON_SPACE.search(rest)
        if m is not None:
            line += rest.count("\n", 0, m.start())
            raise InputError(f"line {line}: data after the end of the JSON array")
        line += rest.count("\n")
        rest = stream.read(READ_CHUNK)
        if not rest:
            return
