"""`ledger serve`'s log lines: its formatter makes the time text once a second,
and must write what logging's own Formatter writes."""

from __future__ import annotations

import logging

from api.serve import _Formatter

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def test_lines_are_those_of_logging_s_formatter() -> None:
    ours, theirs = _Formatter(FORMAT), logging.Formatter(FORMAT)
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25):
        record = logging.LogRecord("ledger.api", logging.INFO, "", 0, "r-1 %s", ("POST",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == theirs.format(record)
    record = logging.LogRecord("ledger.api", logging.INFO, "", 0, "x", (), None)
    assert ours.formatTime(record, "%Y") == theirs.formatTime(record, "%Y")
