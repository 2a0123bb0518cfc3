"""`ledger serve`'s log lines, written to their stream a batch at a time.

Every request logs a line. Written one by one, each line is a `write` on the
server's event loop, and a write gives up the interpreter lock: with the group
writer busy, the loop then waited for the lock to come back, once a request
(issue 22: with new request ids, a tenth of a one-event append's server time).
`BatchedLines` keeps the records and a thread of its own formats and writes
them together, at most `every_s` later (formatting there too took another
tenth off the loop's time a request; a record's time is taken when it is
made). Warnings and errors are written at once, after the lines before them;
what is left is written when logging shuts down (at exit).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

EVERY_S = 0.1


class BatchedLines(logging.Handler):
    """A `logging.StreamHandler` whose INFO lines reach `stream` in batches
    (module doc); same lines, same order."""

    def __init__(self, stream: TextIO, every_s: float = EVERY_S) -> None:
        super().__init__()
        self.stream = stream
        self._every_s = every_s
        self._records: list[logging.LogRecord] = []
        self._waiting = threading.Event()
        self._writer: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Called under the handler's lock (logging.Handler.handle), as is flush.
        self._records.append(record)
        if record.levelno >= logging.WARNING:
            self.flush()
        elif len(self._records) == 1:
            self._wake_writer()

    def flush(self) -> None:
        self.acquire()
        try:
            records, self._records = self._records, []
            self._waiting.clear()
            if records:
                self.stream.write("".join(self._lines(records)))
                self.stream.flush()
        except (OSError, ValueError):
            pass  # the stream is gone (closed, a broken pipe): nowhere left to say so
        finally:
            self.release()

    def _lines(self, records: list[logging.LogRecord]) -> list[str]:
        lines = []
        for record in records:
            try:
                lines.append(self.format(record) + "\n")
            except Exception:
                self.handleError(record)  # as StreamHandler does: said, and skipped
        return lines

    def _wake_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name="log-lines", daemon=True)
            self._writer.start()
        self._waiting.set()

    def _write(self) -> None:
        while True:
            self._waiting.wait()
            time.sleep(self._every_s)
            self.flush()
