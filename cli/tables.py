"""Plain-text tables for human output: aligned columns, long cells shortened."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from ledger.printable import printable


@dataclass(frozen=True)
class Column:
    """One table column: its header, how to get its cell from a row, its widest
    cell, and whether it is right-aligned (numbers)."""

    header: str
    cell: Callable[[dict[str, Any]], object]
    width: int = 40  # longest cell shown; longer ones end with "…"
    right: bool = False


def _text(value: object, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    else:
        text = printable(" ".join(str(value).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def render(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> list[str]:
    """The table's lines, header first, columns two spaces apart; cells made
    printable, on one line, and cut to their column's width."""
    cells = [[_text(c.cell(row), c.width) for c in columns] for row in rows]
    widths = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if c.right else v.ljust(w)
            for v, w, c in zip(values, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line([c.header for c in columns])] + [line(r) for r in cells]


def echo_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
    """Print the table `render` makes to stdout."""
    for text in render(columns, rows):
        click.echo(text)
