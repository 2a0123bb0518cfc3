"""Reading producer input: NDJSON or one JSON array, from a file or stdin, streamed.

Yields each event's raw JSON text with the line it starts on, so a rejection can
name its line. Neither format is loaded whole: NDJSON goes line by line, an
array is decoded element by element from a sliding buffer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

_CHUNK = 1 << 16
_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class InputItem:
    line: int
    raw: str


class InputError(ValueError):
    """The input as a whole cannot be read (not one of the two formats)."""


def read_items(stream: IO[str]) -> Iterator[InputItem]:
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
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return None
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
    yield from stream


def _array_items(stream: IO[str], buffer: str, line: int) -> Iterator[InputItem]:
    pos = 0
    expect_value = True
    while True:
        # Skip whitespace and separators, counting lines.
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n":
                if buffer[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buffer):
                break
            more = stream.read(_CHUNK)
            if not more:
                raise InputError(f"line {line}: JSON array is not closed with ']'")
            buffer, pos = buffer[pos:] + more, 0
        ch = buffer[pos]
        if ch == "]":
            return
        if ch == ",":
            if expect_value:
                raise InputError(f"line {line}: unexpected ',' in JSON array")
            expect_value = True
            pos += 1
            continue
        if not expect_value:
            raise InputError(f"line {line}: expected ',' or ']' in JSON array")
        while True:
            try:
                _, end = _decoder.raw_decode(buffer, pos)
                break
            except json.JSONDecodeError as exc:
                more = stream.read(_CHUNK)
                if not more:
                    raise InputError(f"line {line}: malformed JSON in array: {exc.msg}") from None
                buffer += more
        text = buffer[pos:end]
        yield InputItem(line, text)
        line += text.count("\n")
        buffer, pos = buffer[end:], 0
        expect_value = False
