"""The group committer in a process of its own (`ledger serve --append-writer
process`): one-event appends stored in shared transactions, as `ledger.grouping`
does in a thread, by a writer process that does not share the event loop's
interpreter lock.

In a thread, the group writer and the event loop take turns on one interpreter
lock, so a server turns at most about one core into appends, and every hand-over
of the lock costs both sides (issue 22, docs/performance.md). In a process of
its own the writer decides and stores groups while the loop reads, answers and
routes requests on the other core.

The server's loop sends each event (its JSON text, which store, skip_invalid)
down a pipe, batched per turn of the loop; the writer takes everything waiting
(after a short window for a lone event), stores each store's events as one
group (`ledger.grouping.GroupStore`, the thread's own code) and sends back each
event's outcome, with the appends it observed for the server's metrics. A
caller is answered only after its group committed: an answer means durable.

One writer serves a whole server, every tenant of it included (each tenant's
events are their own groups, through their own store). If the writer dies, the
events waiting on it are answered 503 (retrying is safe: an event id stored
before counts as a duplicate) and the next append starts a new one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import signal
import struct
import threading
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from services.errors import Category, ServiceError

if TYPE_CHECKING:
    from ledger.appending.report import AppendReport
    from ledger.grouping import GroupStore
    from ledger.tenants import Tenant
    from services.bootstrap import Services

log = logging.getLogger("ledger.writer")

# multiprocessing.Connection's frame: a 4-byte big-endian length, then the bytes.
_HEADER = struct.Struct("!i")
_READ_CHUNK = 256 * 1024
# How long closing waits for the writer to finish its group and exit.
STOP_WAIT_S = 30.0


@dataclass(frozen=True)
class StoreOptions:
    """What the writer needs to open the same store as a server's `Services`
    (the rest comes from the environment it inherits). A tenant's entry is
    part of it: a tenant moved to another store is another store to the writer."""

    db_option: str | None = None
    rights_option: str | None = None
    tenant_option: str | None = None
    tenants_option: str | None = None
    tenant: Tenant | None = None

    @classmethod
    def of(cls, services: Services) -> StoreOptions:
        return cls(
            services.db_option,
            services.rights_option,
            services.tenant_option,
            services.tenants_option,
            services.tenant_entry(),
        )

    def services(self) -> Services:
        """A `Services` of the same store (in the writer)."""
        from services.bootstrap import Services

        return Services(
            db_option=self.db_option,
            rights_option=self.rights_option,
            tenant_option=self.tenant_option,
            tenants_option=self.tenants_option,
            _tenant=self.tenant,
        )


# Messages down the pipe (each frame a list of them): ("append", token, store,
# raw, skip_invalid), ("open", store) and ("close", store); up, one kind only:
# ([(token, outcome)...], groups committed, [(report, seconds)...] observed).


class WriterProcess:
    """The server's side of the writer process: appends submitted on one event
    loop, answered there. Started on first use (`start`), in a thread."""

    def __init__(self, *, window_s: float | None = None, max_events: int | None = None) -> None:
        from ledger.grouping import DEFAULT_MAX_EVENTS, DEFAULT_WINDOW_S

        self._window_s = DEFAULT_WINDOW_S if window_s is None else window_s
        self._max_events = DEFAULT_MAX_EVENTS if max_events is None else max_events
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, asyncio.Future[AppendReport]] = {}
        self._out = bytearray()
        self._batch: list[tuple[Any, ...]] = []
        self._in = bytearray()
        self._reading: Connection | None = None  # the pipe the loop watches
        self._tokens = itertools.count(1)
        self.groups = 0  # transactions the writer committed (for tests and benchmarks)

    def start(self, store: StoreOptions | None = None) -> None:
        """Start the writer if it is not running (spawning one costs a new
        interpreter: call it off the event loop); a new one opens `store` at
        once, before the first append waits on it."""
        with self._lock:
            if self._conn is None:
                self._spawn(store)

    def submit_on_loop(
        self,
        store: StoreOptions,
        raw: str,
        loop: asyncio.AbstractEventLoop,
        *,
        skip_invalid: bool = False,
    ) -> asyncio.Future[AppendReport]:
        """One event for `store`, from a caller on `loop` (called there): an
        asyncio future set once its group committed, or failed. A caller that
        stops waiting leaves the event to be stored all the same."""
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("a writer process answers one event loop")
        if self._conn is None:
            self.start()  # it stopped: a new one (the interpreter starts in the child)
        conn = self._conn
        assert conn is not None
        if self._reading is not conn:
            loop.add_reader(conn.fileno(), self._readable)
            self._reading = conn
        outcome: asyncio.Future[AppendReport] = loop.create_future()
        token = next(self._tokens)
        self._waiting[token] = outcome
        self._queue_message(("append", token, store, raw, skip_invalid))
        return outcome

    def forget(self, store: StoreOptions) -> None:
        """The writer closes `store`'s connections after the events sent before
        (a tenant's store that closed, or moved)."""
        if self._conn is None:
            return
        message = ("close", store)
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._queue_message, message)
        else:
            self._queue_message(message)

    def close(self) -> None:
        """Let the writer finish what it was sent, then stop it."""
        with self._lock:
            conn, process = self._conn, self._process
            if conn is None or process is None:
                return
            unsent = bytes(self._out) + _frame(self._batch) + _HEADER.pack(0)  # then the end
            self._batch = []
            self._out.clear()
            self._unwatch()
            try:
                os.set_blocking(conn.fileno(), True)
                _write_all(conn.fileno(), unsent)
                while self._waiting and conn.poll(STOP_WAIT_S):
                    chunk = os.read(conn.fileno(), _READ_CHUNK)
                    if not chunk:
                        break
                    self._received(chunk)
            except OSError:
                pass
            process.join(STOP_WAIT_S)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
            self._conn = self._process = None
            self._in.clear()
            self._fail_waiting("the server is stopping")

    def _spawn(self, store: StoreOptions | None) -> None:
        context = get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=serve,
            args=(theirs, self._window_s, self._max_events),
            name="ledger-append-writer",
            daemon=True,
        )
        process.start()
        theirs.close()
        if store is not None:
            ours.send_bytes(pickle.dumps([("open", store)], pickle.HIGHEST_PROTOCOL))
        os.set_blocking(ours.fileno(), False)
        self._conn, self._process = ours, process

    def _queue_message(self, message: tuple[Any, ...]) -> None:
        if self._conn is None:
            return
        if not self._batch and self._loop is not None:
            # Everything queued in this turn of the loop goes in one frame.
            self._loop.call_soon(self._send_batch)
        self._batch.append(message)

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        if not batch or self._conn is None:
            return
        self._out += _frame(batch)
        self._flush()

    def _flush(self) -> None:
        """Write what the pipe takes now; the rest when it is writable again
        (a full pipe never blocks the loop)."""
        conn, loop = self._conn, self._loop
        if conn is None or loop is None:
            return
        try:
            written = os.write(conn.fileno(), self._out)
        except BlockingIOError:
            written = 0
        except OSError:
            self._lost()
            return
        del self._out[:written]
        if self._out:
            loop.add_writer(conn.fileno(), self._flush)
        else:
            loop.remove_writer(conn.fileno())

    def _readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            chunk = os.read(conn.fileno(), _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._lost()
            return
        self._received(chunk)

    def _received(self, chunk: bytes) -> None:
        self._in += chunk
        while len(self._in) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._in)
            if len(self._in) < _HEADER.size + size:
                break
            frame = bytes(self._in[_HEADER.size : _HEADER.size + size])
            del self._in[: _HEADER.size + size]
            self._take(frame)

    def _take(self, frame: bytes) -> None:
        from services.appending import observe_append

        outcomes, groups, observed = pickle.loads(frame)
        self.groups += groups
        for report, seconds in observed:
            observe_append(report, seconds)
        for token, outcome in outcomes:
            future = self._waiting.pop(token, None)
            if future is None or future.done():  # its caller went away
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _lost(self) -> None:
        """The writer died (or its pipe broke): those waiting get a 503; the
        next append starts a new writer."""
        conn, process = self._conn, self._process
        self._unwatch()
        self._out.clear()
        self._in.clear()
        self._conn = self._process = None
        self._batch = []
        if conn is not None:
            conn.close()
        code = None
        if process is not None:
            process.join(1)
            code = process.exitcode
        log.warning(
            "the append writer process stopped (exit code %s); %d waiting appends answered 503",
            code,
            len(self._waiting),
        )
        self._fail_waiting(f"the append writer process stopped (exit code {code})")

    def _unwatch(self) -> None:
        conn, loop = self._reading, self._loop
        self._reading = None
        if conn is not None and loop is not None and not loop.is_closed():
            loop.remove_reader(conn.fileno())
            loop.remove_writer(conn.fileno())

    def _fail_waiting(self, why: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(
                    ServiceError(
                        Category.UNAVAILABLE,
                        f"{why}; the event may or may not be stored: retry it "
                        "(an event id stored before counts as a duplicate)",
                    )
                )


class ProcessGroups:
    """One store's appends through the server's writer process: what a
    server's state holds in place of `ledger.grouping.AppendGroups`."""

    def __init__(self, writer: WriterProcess, store: StoreOptions) -> None:
        self._writer = writer
        self._store = store

    @property
    def groups(self) -> int:
        return self._writer.groups

    def submit_on_loop(
        self, raw: str, loop: asyncio.AbstractEventLoop, *, skip_invalid: bool = False
    ) -> asyncio.Future[AppendReport]:
        return self._writer.submit_on_loop(self._store, raw, loop, skip_invalid=skip_invalid)

    def close(self) -> None:
        self._writer.forget(self._store)


# The writer's side.


def serve(conn: Connection, window_s: float, max_events: int) -> None:
    """The writer process: store what the server sends until it says stop or
    goes away. The server stops it; signals to the process group do not."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    writer = _Writer(conn, window_s, max_events)
    # SIGTERM (a service manager's, multiprocessing's at the server's exit):
    # stop, after the group being stored if there is one.
    signal.signal(signal.SIGTERM, writer.stop_soon)
    writer.run()


class _Writer:
    def __init__(self, conn: Connection, window_s: float, max_events: int) -> None:
        from services.appending import APPEND_OBSERVERS

        self._conn = conn
        self._window_s = window_s
        self._max_events = max_events
        self._stores: dict[StoreOptions, tuple[Services, GroupStore]] = {}
        self._observed: list[tuple[AppendReport | None, float]] = []
        self._busy = False
        self._stopping = False
        APPEND_OBSERVERS.append(lambda report, seconds: self._observed.append((report, seconds)))

    def run(self) -> None:
        try:
            stop = False
            while not (stop or self._stopping):
                messages, stop = self._next()
                self._busy = True
                self._handle(messages)
                self._busy = False
        except (EOFError, OSError):
            return  # the server went away
        finally:
            for services, store in self._stores.values():
                store.close()
                services.close()

    def stop_soon(self, signum: int, frame: object) -> None:
        if not self._busy:
            raise SystemExit(0)  # what was received and not stored is answered 503
        self._stopping = True

    def _next(self) -> tuple[list[tuple[Any, ...]], bool]:
        """Everything waiting, and whether the server said stop after it:
        blocks for the first frame, then takes what else arrived; a lone
        event waits a moment for company, as in the thread."""
        messages: list[tuple[Any, ...]] = []
        while True:
            frame = self._conn.recv_bytes()
            if not frame:  # the end
                return messages, True
            messages.extend(pickle.loads(frame))
            if len(messages) >= self._max_events:
                return messages, False
            if not wait([self._conn], 0 if len(messages) > 1 else self._window_s):
                return messages, False

    def _handle(self, messages: list[tuple[Any, ...]]) -> None:
        groups: dict[StoreOptions, list[tuple[int, str, bool]]] = {}
        for message in messages:
            if message[0] == "append":
                _, token, store, raw, skip_invalid = message
                groups.setdefault(store, []).append((token, raw, skip_invalid))
            elif message[0] == "open":  # what the first append would open
                self._writer(message[1])
            else:  # ("close", store): after the events sent before it
                self._store_groups(groups)
                groups = {}
                self._forget(message[1])
        self._store_groups(groups)

    def _store_groups(self, groups: dict[StoreOptions, list[tuple[int, str, bool]]]) -> None:
        if not groups:
            return
        answered: list[tuple[int, Any]] = []
        committed = 0
        for store, pending in groups.items():
            for start in range(0, len(pending), self._max_events):
                chunk = pending[start : start + self._max_events]
                try:
                    writer = self._writer(store)
                except BaseException as exc:  # e.g. the tenant is not in the directory
                    outcomes: list[Any] = [exc] * len(chunk)
                else:
                    before = writer.groups
                    outcomes = writer.store([(raw, skip) for _, raw, skip in chunk])
                    committed += writer.groups - before
                answered += [
                    (token, _portable(outcome))
                    for (token, _, _), outcome in zip(chunk, outcomes, strict=True)
                ]
        observed, self._observed = self._observed, []
        self._conn.send_bytes(
            pickle.dumps((answered, committed, observed), pickle.HIGHEST_PROTOCOL)
        )

    def _writer(self, store: StoreOptions) -> GroupStore:
        found = self._stores.get(store)
        if found is None:
            from services.appending import group_store

            services = store.services()
            found = services, group_store(services.app(), services.policy)
            self._stores[store] = found
        return found[1]

    def _forget(self, store: StoreOptions) -> None:
        found = self._stores.pop(store, None)
        if found is not None:
            services, writer = found
            writer.close()
            services.close()


def _frame(messages: list[tuple[Any, ...]]) -> bytes:
    """Messages as one frame of multiprocessing.Connection's (nothing: no frame)."""
    if not messages:
        return b""
    payload = pickle.dumps(messages, pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _portable(outcome: Any) -> Any:
    """An outcome the pipe can carry: an exception that does not pickle is
    handed over as a RuntimeError naming it (the server answers it 500)."""
    if isinstance(outcome, BaseException):
        try:
            pickle.dumps(outcome)
        except Exception:
            return RuntimeError(f"append group failed: {outcome!r}")
    return outcome
