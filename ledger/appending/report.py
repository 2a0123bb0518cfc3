"""What an append reports: the events stored and skipped, and each rejection."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.events import FieldError


@dataclass(frozen=True)
class Rejection:
    """One input event not stored, and why: its input line, id and type when known, each
    field with its reason, and the class of the reason (`reason_class`)."""

    line: int
    event_id: str | None
    event_type: str | None
    errors: tuple[FieldError, ...]
    # "contract" (the event's shape), "rule" (the stored state forbids it) or
    # "store" (the database refused the row): the class the rejection metrics count by.
    reason_class: str = "contract"

    def __str__(self) -> str:
        what = "; ".join(str(e) for e in self.errors)
        return (
            f"line {self.line} (event_id {self.event_id or '-'}, "
            f"type {self.event_type or '-'}): {what}"
        )


@dataclass
class AppendReport:
    """What one append did: events appended, duplicates of stored events skipped, the
    rejections, and the positions the appended events took."""

    appended: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    first_position: int | None = None
    last_position: int | None = None
    stored: bool = True  # False when all-or-nothing rolled everything back
    # The input line of each event stored, in position order: kept only when the
    # Appender was asked to (a group of one-event requests, which answers each
    # request with its own outcome); a large import would hold a list as long as
    # its input.
    appended_lines: list[int] | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejected

    def _mark(self) -> _Mark:
        lines = len(self.appended_lines) if self.appended_lines is not None else 0
        return _Mark(
            self.appended,
            self.duplicates,
            len(self.rejected),
            lines,
            self.first_position,
            self.last_position,
        )

    def _undo_to(self, mark: _Mark) -> None:
        """Back to what it said at `mark`: a transaction since then rolled back
        (its positions too, or a report could point at rows never stored)."""
        self.appended, self.duplicates = mark.appended, mark.duplicates
        del self.rejected[mark.rejected :]
        if self.appended_lines is not None:
            del self.appended_lines[mark.lines :]
        self.first_position, self.last_position = mark.first_position, mark.last_position


@dataclass(frozen=True)
class _Mark:
    appended: int
    duplicates: int
    rejected: int
    lines: int
    first_position: int | None
    last_position: int | None
