"""Progress of a long replay: a bar with rate and ETA on a terminal, JSON lines
for scripts (`--format json`), a line every few seconds in plain logs."""

from __future__ import annotations

import sys
import time
from typing import Literal

import click

from cli.context import emit_json

Mode = Literal["bar", "json", "log"]

_EVERY = {"bar": 0.2, "json": 1.0, "log": 5.0}
_BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ReplayProgress:
    """Shows a replay's progress as `mode` says; `begin(head)` sets the head
    once it is known, `update` and `set_phase` follow the replay."""

    def __init__(self, mode: Mode, start: int, head: int = 0) -> None:
        self.mode = mode
        self.start = start
        self.head = head
        self.position = start
        self.events = 0
        self.phase = "load"
        self._began = time.monotonic()
        self._shown = 0.0

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._began
        return self.events / elapsed if elapsed > 0 else 0.0

    def begin(self, head: int) -> None:
        """The head as the replay starts (shown nothing yet)."""
        self.head = head

    def set_phase(self, phase: str, head: int | None = None) -> None:
        self.phase = phase
        if head is not None:
            self.head = max(head, self.position)
        self._show(force=True)

    def update(self, position: int, count: int) -> None:
        self.position = position
        self.head = max(self.head, position)
        self.events += count
        self._show()

    def finish(self) -> None:
        # Scripts and logs get the command's own summary next; only the bar needs closing.
        if self.mode == "bar":
            self._show(force=True)
            click.echo("", err=True)

    def _show(self, force: bool = False) -> None:
        moment = time.monotonic()
        if not force and moment - self._shown < _EVERY[self.mode]:
            return
        self._shown = moment
        total = max(self.head - self.start, 1)
        done = min(max(self.position - self.start, 0), total)
        rate = self.rate
        eta = (self.head - self.position) / rate if rate > 0 else None
        if self.mode == "json":
            emit_json(
                {
                    "event": "progress",
                    "phase": self.phase,
                    "position": self.position,
                    "head": self.head,
                    "events": self.events,
                    "events_per_s": round(rate, 1),
                    "eta_s": None if eta is None else round(eta, 1),
                }
            )
            return
        eta_text = _duration(eta) if eta is not None else "?"
        text = (
            f"{self.phase:<8} {done / total:>4.0%}  {self.position:,}/{self.head:,}  "
            f"{rate:,.0f} events/s  ETA {eta_text}"
        )
        if self.mode == "bar":
            filled = int(_BAR_WIDTH * done / total)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            sys.stderr.write(f"\r[{bar}] {text}\x1b[K")
            sys.stderr.flush()
        else:
            click.echo(text, err=True)
