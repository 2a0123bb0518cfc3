"""`ledger serve`'s log lines: its formatter makes the time text once a second,
and must write what logging's own Formatter writes; its handler writes the
lines in batches (`api.loglines`)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time

from api.loglines import BatchedLines
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


class _Stream(io.StringIO):
    """A stream that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _batched(
    every_s: float, fmt: str = "%(levelname)s %(message)s"
) -> tuple[_Stream, BatchedLines, logging.Logger]:
    """A logger of its own writing through a `BatchedLines` to a counting stream."""
    stream = _Stream()
    handler = BatchedLines(stream, every_s=every_s)
    handler.setFormatter(logging.Formatter(fmt))
    logger = logging.getLogger(f"test.batched.{id(handler)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return stream, handler, logger


def test_lines_are_written_together_soon_after_and_in_order() -> None:
    stream, _, log = _batched(every_s=0.2)
    for i in range(100):
        log.info("request %d", i)
    assert stream.getvalue() == ""  # not one write per line on the caller's thread
    deadline = time.monotonic() + 10
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue() == "".join(f"INFO request {i}\n" for i in range(100))
    assert stream.writes == 1


def test_a_warning_is_written_at_once_after_the_lines_before_it() -> None:
    stream, handler, log = _batched(every_s=60)
    log.info("first")
    log.warning("then this")
    assert stream.getvalue() == "INFO first\nWARNING then this\n"
    log.info("last")
    handler.flush()  # what logging.shutdown does at exit
    assert stream.getvalue().endswith("WARNING then this\nINFO last\n")


def test_a_server_writes_its_last_lines_when_it_exits() -> None:
    script = (
        "import logging, sys\n"
        "from api.loglines import BatchedLines\n"
        "handler = BatchedLines(sys.stderr, every_s=60)\n"
        "log = logging.getLogger('x'); log.addHandler(handler); log.setLevel(logging.INFO)\n"
        "for i in range(3): log.info('line %d', i)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "line 0\nline 1\nline 2\n", done.stderr


def test_a_line_that_cannot_be_formatted_spares_the_others() -> None:
    stream, handler, log = _batched(every_s=60, fmt="%(message)s")
    log.info("before")
    log.info("%d requests", "not a number")  # logging reports it on stderr
    log.info("after")
    handler.flush()
    assert stream.getvalue() == "before\nafter\n"
