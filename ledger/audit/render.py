"""Writing a history in the auditor's format, one event at a time.

Every writer streams: nothing is buffered beyond the event being written, so a
history of a million events is written in constant memory. `json` is one
object whose `events` array is written incrementally; `ndjson` is one event a
line; `csv` is one row per field change (one row for an event without
changes); `table` is for people.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, Protocol

from ledger.audit.history import AuditEvent, HistoryFilter, Selector
from ledger.printable import printable, spreadsheet_cell

FORMATS = ("table", "json", "ndjson", "csv")

CSV_COLUMNS = (
    "position",
    "event_id",
    "type",
    "occurred_at",
    "recorded_at",
    "actor_kind",
    "actor_id",
    "actor_name",
    "source",
    "customer_id",
    "subject",
    "stream_version",
    "field",
    "old",
    "new",
    "data",
    "chain_hash",
)

_TABLE_HEADER = (
    f"{'POSITION':>9}  {'OCCURRED_AT':<25}  {'RECORDED_AT':<27}  {'TYPE':<21}  "
    f"{'EVENT_ID':<36}  ACTOR / SOURCE"
)
_DETAIL_INDENT = " " * 11


class Writer(Protocol):
    """Where audit output goes: anything with a `write(text)`, such as a text file."""

    def write(self, text: str, /) -> Any: ...


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def write_history(
    events: Iterable[AuditEvent],
    output_format: str,
    out: Writer,
    selector: Selector,
    filters: HistoryFilter,
) -> int:
    """Write `events` to `out`; returns how many were written."""
    if output_format == "json":
        return _write_json(events, out, selector, filters)
    if output_format == "ndjson":
        count = 0
        for event in events:
            out.write(_dumps(event.as_json()) + "\n")
            count += 1
        return count
    if output_format == "csv":
        return _write_csv(events, out)
    if output_format == "table":
        return _write_table(events, out, selector, filters)
    raise ValueError(f"unknown format {output_format!r}")


def _write_json(
    events: Iterable[AuditEvent], out: Writer, selector: Selector, filters: HistoryFilter
) -> int:
    head = {
        "selector": {"kind": selector.kind, "id": selector.id},
        "subject": selector.subject,
        "filters": filters.as_json(),
    }
    # The header object without its closing brace, then the array streamed into it.
    out.write(_dumps(head)[:-1] + ',"events":[')
    count = 0
    for event in events:
        out.write(("\n" if count == 0 else ",\n") + _dumps(event.as_json()))
        count += 1
    out.write(f'\n],"count":{count}}}\n')
    return count


class _SafeCsv:
    """A csv writer whose text cells a spreadsheet cannot take for formulas."""

    def __init__(self, out: Writer) -> None:
        self._writer = csv.writer(out, lineterminator="\n")

    def writerow(self, row: list[Any]) -> None:
        self._writer.writerow([spreadsheet_cell(v) if isinstance(v, str) else v for v in row])


def _write_csv(events: Iterable[AuditEvent], out: Writer) -> int:
    writer = _SafeCsv(out)
    writer.writerow(list(CSV_COLUMNS))
    count = 0
    for e in events:
        base = [
            e.position,
            e.event_id,
            e.type,
            e.occurred_at,
            e.recorded_at,
            e.actor_kind,
            e.actor_id,
            e.actor_name,
            e.source,
            e.customer_id,
            e.subject,
            e.stream_version,
        ]
        data = _dumps(_without_changes(e.data)) if e.data is not None else ""
        if e.changes:
            for change in e.changes:
                writer.writerow(
                    [
                        *base,
                        _field(change),
                        _dumps(change.get("old")) if isinstance(change, dict) else "",
                        _dumps(change.get("new")) if isinstance(change, dict) else "",
                        data,
                        e.chain_hash,
                    ]
                )
        else:
            writer.writerow([*base, "", "", "", data, e.chain_hash])
        count += 1
    return count


class _Lines:
    """Writes whole lines for a terminal: control characters in them escaped."""

    def __init__(self, out: Writer) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(printable(text.removesuffix("\n")) + "\n")


def _write_table(
    events: Iterable[AuditEvent], raw_out: Writer, selector: Selector, filters: HistoryFilter
) -> int:
    out = _Lines(raw_out)
    count = 0
    for e in events:
        if count == 0:
            out.write(_TABLE_HEADER + "\n")
        actor = " ".join(x for x in (e.actor_kind, e.actor_id) if x) or "-"
        if e.actor_name:
            actor += f" ({e.actor_name})"
        out.write(
            f"{e.position:>9}  {e.occurred_at or '-':<25}  {e.recorded_at or '-':<27}  "
            f"{e.type:<21}  {e.event_id or '-':<36}  {actor} / {e.source or '-'}\n"
        )
        if e.error:
            out.write(f"{_DETAIL_INDENT}! {e.error}\n")
        elif e.changes:
            for change in e.changes:
                if isinstance(change, dict):
                    out.write(
                        f"{_DETAIL_INDENT}{_field(change)}: {_dumps(change.get('old'))} -> "
                        f"{_dumps(change.get('new'))}\n"
                    )
        elif e.data is not None:
            out.write(f"{_DETAIL_INDENT}{_dumps(e.data)}\n")
        count += 1
    filtered = filters.active
    if count == 0:
        out.write(f"no events for {selector}{' matching the filters' if filtered else ''}\n")
    else:
        plural = "event" if count == 1 else "events"
        out.write(f"{count} {plural} for {selector}{' matching the filters' if filtered else ''}\n")
    return count


def _field(change: Any) -> str:
    return str(change.get("field")) if isinstance(change, dict) else _dumps(change)


def _without_changes(data: Any) -> Any:
    if isinstance(data, dict) and "changes" in data:
        return {k: v for k, v in data.items() if k != "changes"}
    return data
