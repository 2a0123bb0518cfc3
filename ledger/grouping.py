"""Group commit: concurrent one-event appends stored in one transaction.

Positions are assigned under the events table's write lock, so writers that
each store one event per transaction queue on that lock and on a commit each.
Here one writer thread takes every event waiting (up to `max_events`, after a
short `window_s` for more to arrive when only one is waiting) and stores them
with one `append_items` call in skip-invalid mode: each event is checked on its
own, so one caller's rejection never fails another's, and the whole group
commits once. Each caller then gets its own outcome, built from that one
transaction's report, only after the commit: an answer means durable.

Only single-event requests are grouped; a request with several events keeps its
own all-or-nothing transaction.

An event loop submits with `submit_on_loop`: its callers await plain asyncio
futures, and the outcomes of one group reach a loop with one wake-up (one
`call_soon_threadsafe`), not one per caller.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from ledger.appending.appender import Appender
from ledger.appending.report import AppendReport, Rejection
from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.input import InputItem
from ledger.reading import positions_between
from ledger.rights import RightsPolicy

DEFAULT_WINDOW_S = 0.001
DEFAULT_MAX_EVENTS = 1000


@dataclass
class _Waiting:
    raw: str
    skip_invalid: bool
    # Set by the writer thread; or, with `loop`, on that loop (see `_settle`).
    outcome: Future[AppendReport] | asyncio.Future[AppendReport]
    loop: asyncio.AbstractEventLoop | None = None


class GroupStore:
    """Stores one group of one-event appends in one transaction and answers each
    with its own outcome: what the group committer does per group, in its
    thread (`AppendGroups`) or in a writer process of its own
    (`services.writer_process`)."""

    def __init__(
        self,
        app: LedgerApplication,
        policy: Callable[[], RightsPolicy],
        append: Callable[..., AppendReport],
        opener: Callable[..., Appender] = Appender,
    ) -> None:
        self._app = app
        self._policy = policy
        # services.appending.append_with (passed in: this module sits below the services).
        self._append = append
        self._open = opener
        # Kept across groups: its connection and its cache of customers' state
        # (refreshed under the write lock when stale) save round trips per group.
        self._appender: Appender | None = None
        self._conn: Connection | None = None
        self.groups = 0  # transactions committed (for tests and benchmarks)

    def store(self, pending: Sequence[tuple[str, bool]]) -> list[Outcome]:
        """Each (event's JSON text, skip_invalid) stored in one transaction: its
        report, as `append_items` would give for it alone, or the group's failure."""
        try:
            items = [InputItem(index, raw) for index, (raw, _) in enumerate(pending)]
            if self._appender is not None and self._appender.broken:
                # Its connection did not survive a database restart: a group
                # stored through it would fail although the database is back.
                self._drop_connection()
            if self._appender is None:
                self._appender = self._open(self._app, self._policy(), track_lines=True)
            report = self._append(self._appender, items, skip_invalid=True)
            outcomes = self._split(pending, report)
        except BaseException as exc:  # every caller gets the failure; the writer lives on
            self._drop_connection()
            if isinstance(exc, StopIteration):
                # An asyncio future refuses StopIteration, and its awaiting
                # request would then wait forever: hand over a failure it takes.
                exc = RuntimeError(f"append group failed: {exc!r}")
            return [exc] * len(pending)
        self.groups += 1
        return list(outcomes)

    def close(self) -> None:
        self._drop_connection()

    def _split(self, pending: Sequence[tuple[str, bool]], report: AppendReport) -> list[Outcome]:
        """Each request's own outcome from the group's report: rejected, stored
        (at its own position), or not stored although accepted (a duplicate: its
        event id stored before or earlier in the group, or a repeated erasure)."""
        rejected = {r.line: r for r in report.rejected}
        stored_lines = report.appended_lines
        if stored_lines is None:
            raise RuntimeError("the group's Appender does not track the lines it stores")
        positions = dict(zip(stored_lines, self._positions(report), strict=True))
        outcomes: list[Outcome] = []
        for i, (_, skip_invalid) in enumerate(pending):
            rejection = rejected.get(i)
            if rejection is not None:
                outcomes.append(_rejected(rejection, skip_invalid))
            elif i in positions:
                position = positions[i]
                outcomes.append(
                    AppendReport(appended=1, first_position=position, last_position=position)
                )
            else:
                outcomes.append(AppendReport(duplicates=1))
        return outcomes

    def _positions(self, report: AppendReport) -> list[int]:
        """The group's new positions in input order. Most groups need no query:
        when it stored as many events as there are positions from first to last,
        those positions are exactly its new rows (under the table lock, in input
        order)."""
        first, last = report.first_position, report.last_position
        if first is None or last is None or report.appended == 0:
            return []
        if last - first + 1 == report.appended:
            return list(range(first, last + 1))
        return list(positions_between(self._connection(), first, last))

    def _connection(self) -> Connection:
        if self._conn is not None and self._conn.broken:
            self._conn.close()
            self._conn = None
        if self._conn is None:
            self._conn = Connection(self._app.url)
        return self._conn

    def _drop_connection(self) -> None:
        if self._appender is not None:
            appender, self._appender = self._appender, None
            appender.close()
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class AppendGroups:
    """Stores one-event appends from many threads in shared transactions: each
    group through `writer`, in a thread of its own."""

    def __init__(
        self,
        writer: GroupStore,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self._writer = writer
        self._window_s = window_s
        self._max_events = max_events
        self._queue: queue.Queue[_Waiting | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="append-groups", daemon=True)
        self._thread.start()

    @property
    def groups(self) -> int:
        """Transactions committed (for tests and benchmarks)."""
        return self._writer.groups

    def append_one(self, raw: str, *, skip_invalid: bool = False) -> AppendReport:
        """Store one event (its JSON text) and return its own report, as
        `append_items` would for it alone. Blocks until its group committed."""
        return self.submit(raw, skip_invalid=skip_invalid).result()

    def submit(self, raw: str, *, skip_invalid: bool = False) -> Future[AppendReport]:
        """`append_one` without blocking: the future gets the event's own report
        once its group committed. An event loop awaits it (`asyncio.wrap_future`)
        without holding a worker thread per waiting caller."""
        outcome: Future[AppendReport] = Future()
        self._queue.put(_Waiting(raw, skip_invalid, outcome))
        return outcome

    def submit_on_loop(
        self, raw: str, loop: asyncio.AbstractEventLoop, *, skip_invalid: bool = False
    ) -> asyncio.Future[AppendReport]:
        """`submit` for a caller on the event loop `loop` (called there): an
        asyncio future, set on `loop` once the event's group committed. A caller
        that stops waiting (cancels it) leaves the event to be stored all the
        same, as a retry with its event id would find."""
        outcome: asyncio.Future[AppendReport] = loop.create_future()
        self._queue.put(_Waiting(raw, skip_invalid, outcome, loop))
        return outcome

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)
        self._writer.close()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            deadline = time.monotonic() + self._window_s
            while len(group) < self._max_events:
                try:
                    # Whatever is already waiting joins at once; the window only
                    # holds a lone event back briefly for company.
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if len(group) > 1 or left <= 0:
                        break
                    try:
                        nxt = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                if nxt is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(nxt)
            _settle(group, self._writer.store([(w.raw, w.skip_invalid) for w in group]))


Outcome = AppendReport | BaseException


def _settle(group: list[_Waiting], outcomes: Sequence[Outcome]) -> None:
    """Hand each waiting caller its outcome: a thread's future at once; the
    futures of each event loop together, in one call on that loop."""
    on_loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[AppendReport], Outcome]]]
    on_loops = {}
    for w, outcome in zip(group, outcomes, strict=True):
        if w.loop is None:
            _set(w.outcome, outcome)
        else:
            assert isinstance(w.outcome, asyncio.Future)
            on_loops.setdefault(w.loop, []).append((w.outcome, outcome))
    for loop, settled in on_loops.items():
        try:
            loop.call_soon_threadsafe(_set_all, settled)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _set_all(settled: list[tuple[asyncio.Future[AppendReport], Outcome]]) -> None:
    for outcome, result in settled:
        if not outcome.done():  # not cancelled by a caller that went away
            _set(outcome, result)


def _set(outcome: Future[AppendReport] | asyncio.Future[AppendReport], result: Outcome) -> None:
    if isinstance(result, BaseException):
        outcome.set_exception(result)
    else:
        outcome.set_result(result)


def _rejected(rejection: Rejection, skip_invalid: bool) -> AppendReport:
    # Numbered as the caller's only event; all-or-nothing stored nothing.
    own = Rejection(
        0, rejection.event_id, rejection.event_type, rejection.errors, rejection.reason_class
    )
    return AppendReport(rejected=[own], stored=skip_invalid)
