"""A body produced on a thread of its own and streamed as it is written (the
audit history): `stream(produce)` runs `produce(writer)` and yields what it
writes, through a bounded queue so a slow client slows the producer."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger("ledger.api")


class _Closed(Exception):
    """The client went away: stop producing."""


class QueueWriter:
    """What `write_history` writes to: chunks handed to the response, bounded so
    a slow client slows the reader instead of filling memory."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[str | BaseException | None] = queue.Queue(maxsize=64)
        self.closed = threading.Event()
        self._buffer: list[str] = []
        self._size = 0

    def write(self, text: str, /) -> int:
        """Buffer `text`; hand the buffer on once it holds 32 KiB."""
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= 32 * 1024:
            self.flush()
        return len(text)

    def flush(self) -> None:
        """Hand on what is buffered."""
        if self._buffer:
            self.put("".join(self._buffer))
            self._buffer, self._size = [], 0

    def put(self, item: str | BaseException | None) -> None:
        """Queue a chunk (None: the end; an exception: a failure), waiting while
        the queue is full; `_Closed` once the client has gone."""
        while not self.closed.is_set():
            try:
                self.chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Closed


def stream(produce: Callable[[QueueWriter], None]) -> Iterator[str]:
    """Run `produce(writer)` in its own thread and yield what it writes. The
    status line is already sent, so a failure midway ends the body early (and
    is logged), the only honest signal left."""
    writer = QueueWriter()

    def run() -> None:
        try:
            produce(writer)
            writer.flush()
            writer.put(None)
        except _Closed:
            pass
        except BaseException as exc:
            try:
                writer.put(exc)
            except _Closed:
                pass

    thread = threading.Thread(target=run, name="audit-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = writer.chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                log.error("audit history stream failed: %s", item)
                return
            yield item
    finally:
        writer.closed.set()
