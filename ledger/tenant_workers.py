"""A worker that serves many tenants' stores: it claims its share of the tenant
directory (`ledger.claims`), wakes on LISTEN/NOTIFY with one listening connection
per PostgreSQL server, and runs one pass of a tenant's work at a time in a small
thread pool. What a pass does (project, relay) is the caller's `TenantJob`.

Waking: writers NOTIFY the events table's channel, `ledger_events`, which is the
same name in every schema of a database (the library names the channel after the
table, not its schema), so a notification says only that some store in that
database got events. Each server's watcher then asks, in one statement, the head
of every owned tenant's events table on that server, and schedules a pass for the
tenants whose head moved since their last pass. The same question is asked every
`poll_interval` seconds anyway, should a notification be missed: one query per
server, not a poll per tenant. Tenants on SQLite stores (no notifications) get a
pass every `poll_interval`.

Idle tenants cost nothing but a line in that question: a tenant's job (its
connections, a relay's producer) is closed once it had no pass for `idle_close_s`
seconds and made again on the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ledger.backoff import MAX_BACKOFF_S, Backoff
from ledger.claims import TenantClaims
from ledger.db import Connection
from ledger.errors import TablesMissing, is_unavailable, store_error
from ledger.printable import first_line
from ledger.stores.layout import NOTIFY_CHANNEL
from ledger.tenants import Tenant, TenantDirectory, heads_statement

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("ledger.workers")

# How long a released tenant's pass may take to end after it was told to stop.
_STOP_WAIT_S = 60.0
# How often the main loop looks at due retries, idle jobs and the stop flag.
_TICK_S = 0.2


@dataclass(frozen=True)
class PassResult:
    """What one pass did: events applied or published, the position reached, lines
    worth telling (a projection that stopped at an event), and when to try again
    without a new event (`retry_in`: another relay holds the store's lock)."""

    applied: int
    position: int
    lines: list[str] = field(default_factory=list)
    retry_in: float | None = None


class TenantJob(Protocol):
    """One tenant's work, one pass at a time (never two at once)."""

    def run_pass(self) -> PassResult: ...

    def stop(self) -> None:
        """Make a running pass end after the batch in hand (any thread)."""

    def finish(self) -> None:
        """Make a running pass end at its next clean point, where the next owner
        of the tenant repeats nothing (any thread): handing a tenant to a peer."""

    def close(self) -> None:
        """Free what the job holds (after its pass ended)."""


JobFactory = Callable[[Tenant], TenantJob]

NoticeKind = Literal[
    "started",
    "claimed",
    "released",
    "caught_up",
    "failed",
    "recovered",
    "line",
    "directory_unavailable",
    "stopped",
]


@dataclass(frozen=True)
class WorkerNotice:
    """What a worker tells its caller: its tenants claimed and released, a tenant
    caught up, failing or recovered, the directory lost, and when it stopped."""

    kind: NoticeKind
    tenant: str | None = None
    position: int | None = None
    applied: int = 0
    detail: str = ""
    peers: int | None = None
    owned: int | None = None

    def describe(self) -> str:
        """The notice as one line for a log or a terminal."""
        who = f"tenant {self.tenant}: " if self.tenant else ""
        match self.kind:
            case "started":
                return f"worker started ({self.detail})"
            case "claimed" | "released":
                return (
                    f"{who}{self.kind} ({self.owned} owned, {self.peers} live workers"
                    f"{'; ' + self.detail if self.detail else ''})"
                )
            case "caught_up":
                return f"{who}caught up at position {self.position} ({self.applied} applied)"
            case "failed":
                return f"{who}failed: {self.detail}"
            case "recovered":
                return f"{who}working again at position {self.position}"
            case "line":
                return f"{who}{self.detail}"
            case "directory_unavailable":
                return (
                    f"tenant directory unavailable ({self.detail}); stopped work on every "
                    "tenant, reconnecting with back-off"
                )
            case "stopped":
                return "worker stopped"
        return self.kind

    def as_dict(self) -> dict[str, Any]:
        """The notice as JSON-ready fields (the ones that apply)."""
        d: dict[str, Any] = {"event": self.kind}
        for name in ("tenant", "position", "peers", "owned"):
            value = getattr(self, name)
            if value is not None:
                d[name] = value
        if self.kind in ("caught_up",):
            d["applied"] = self.applied
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True)
class WorkerTuning:
    """How a worker paces itself: the one place its defaults are written (the
    command line's options show them)."""

    claim_interval: float = 5.0
    poll_interval: float = 1.0
    threads: int = 4
    idle_close_s: float = 60.0
    max_backoff: float = MAX_BACKOFF_S
    # Tenants whose job (connections, a relay's producer) stays open between
    # passes: beyond it the least recently worked are closed, so a worker of many
    # busy tenants holds a bounded number of connections to each server.
    open_jobs: int = 16


@dataclass
class WorkerSettings:
    """How a worker runs. `kind` ("projections" or "relay") names its claims;
    `selection` the tenants it may work (None: every tenant in the directory)."""

    kind: str
    selection: frozenset[str] | None = None
    tuning: WorkerTuning = field(default_factory=WorkerTuning)


class _State:
    """One owned tenant: its job, whether a pass runs or is wanted, its back-off."""

    def __init__(self, tenant: Tenant, max_backoff: float) -> None:
        self.tenant = tenant
        self.job: TenantJob | None = None
        self.future: Future[None] | None = None
        self.again = False
        self.seen_head = -1
        self.wanted_head = -1
        self.last_pass = time.monotonic()
        self.retry_at = 0.0
        self.failing = False
        self.reported = False
        self.releasing = False
        self.executing = False  # its pass is on a thread now (not only queued)
        self.backoff = Backoff(max_backoff, first=0.5)

    @property
    def running(self) -> bool:
        return self.future is not None


class TenantWorker:
    """Claims a share of the directory's tenants and works them until `stop()`
    (see the module docstring and `ledger.claims`)."""

    def __init__(
        self,
        directory: TenantDirectory,
        make_job: JobFactory,
        settings: WorkerSettings,
        notify: Callable[[WorkerNotice], None],
    ) -> None:
        self.directory = directory
        self.make_job = make_job
        self.settings = settings
        self.notify = notify
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}
        self._watches: dict[str, _ServerWatch] = {}
        self._pool = ThreadPoolExecutor(settings.tuning.threads, thread_name_prefix="tenant-pass")
        self._peers = 1

    def stop(self) -> None:
        """Stop after the batches in hand (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def owned(self) -> list[str]:
        """The tenants this worker owns now."""
        with self._lock:
            return sorted(self._states)

    def run(self) -> None:
        """Work until `stop()`. The directory unreachable at the start is raised
        (`DatabaseUnavailable`); later it is retried with back-off, every tenant's
        work stopped meanwhile."""
        backoff = Backoff(self.settings.tuning.max_backoff, first=0.5)
        first = True
        try:
            while not self._stop.is_set():
                try:
                    conn = Connection(self.directory.url)
                except Exception as exc:
                    if first or not is_unavailable(exc):
                        raise
                    self._stop.wait(backoff.next())
                    continue
                claims: TenantClaims | None = None
                try:
                    self.directory.ensure(conn)
                    claims = TenantClaims(conn, self.settings.kind)
                    if first:
                        how = (
                            "tenants shared with its peers"
                            if claims.shared
                            else "a SQLite directory: this worker takes every tenant"
                        )
                        self.notify(
                            WorkerNotice(
                                "started",
                                detail=f"{self.settings.kind}, {how}, claiming every "
                                f"{self.settings.tuning.claim_interval:g} s",
                            )
                        )
                    first = False
                    backoff.reset()
                    self._serve(claims)
                except Exception as exc:
                    if not is_unavailable(exc):
                        raise
                    self._drop_all()
                    self.notify(WorkerNotice("directory_unavailable", detail=first_line(exc)))
                    self._stop.wait(backoff.next())
                finally:
                    # Stopping (SIGTERM): each tenant is handed over cleanly, the
                    # relay's batches in flight acknowledged and recorded first.
                    self._drop_all(hand_over=True)
                    if claims is not None:
                        claims.close()
                    else:
                        conn.close()
        finally:
            self._stop.set()
            for watch in list(self._watches.values()):
                watch.close()
            self._watches.clear()
            self._pool.shutdown(wait=True)
        self.notify(WorkerNotice("stopped"))

    # -- rounds -------------------------------------------------------------------

    def _serve(self, claims: TenantClaims) -> None:
        next_round = 0.0
        next_poll = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_round:
                self._round(claims)
                next_round = time.monotonic() + self.settings.tuning.claim_interval
            if now >= next_poll:
                self._poll_sqlite()
                next_poll = now + self.settings.tuning.poll_interval
            self._retry_due()
            self._close_idle()
            self._stop.wait(_TICK_S)

    def _round(self, claims: TenantClaims) -> None:
        entries = {t.tenant: t for t in self.directory.all(claims.conn)}
        selection = self.settings.selection
        wanted = [t for t in entries if selection is None or t in selection]
        with self._lock:
            changed = [
                t for t, s in self._states.items() if t in entries and entries[t].db != s.tenant.db
            ]
        result = claims.round(wanted, release=changed)
        self._peers = result.peers
        if result.released:
            self._release(claims, result.released, result.share)
        for tenant in result.claimed:
            self._claim(entries[tenant], len(claims.owned), result.peers)

    def _claim(self, tenant: Tenant, owned: int, peers: int) -> None:
        state = _State(tenant, self.settings.tuning.max_backoff)
        with self._lock:
            self._states[tenant.tenant] = state
        self.notify(WorkerNotice("claimed", tenant.tenant, owned=owned, peers=peers))
        if tenant.url.kind == "postgresql":
            watch = self._watches.get(tenant.server)
            if watch is None:
                watch = self._watches[tenant.server] = _ServerWatch(self, tenant)
                watch.start()
            watch.add(tenant)
        self._schedule(tenant.tenant, None)

    def _release(self, claims: TenantClaims, tenants: list[str], share: int) -> None:
        states = self._stop_work(tenants, hand_over=True)
        for tenant in tenants:
            claims.unlock(tenant)
            if tenant in states:
                self.notify(
                    WorkerNotice(
                        "released",
                        tenant,
                        owned=len(claims.owned),
                        peers=self._peers,
                        detail=f"share {share}",
                    )
                )

    def _stop_work(self, tenants: list[str], *, hand_over: bool = False) -> dict[str, _State]:
        """Stop every pass of `tenants` at once (`hand_over`: at their next clean
        point), then wait for them and close their jobs; they are no longer this
        worker's."""
        with self._lock:
            states = {t: self._states.pop(t) for t in tenants if t in self._states}
            for state in states.values():
                state.releasing = True
                if state.job is not None:
                    if hand_over:
                        state.job.finish()
                    else:
                        state.job.stop()
        for tenant, state in states.items():
            watch = self._watches.get(state.tenant.server)
            if watch is not None:
                watch.remove(tenant)
        for state in states.values():
            future = state.future
            if future is not None:
                try:
                    future.result(timeout=_STOP_WAIT_S)
                except TimeoutError:
                    # Not at a clean point in time: stop it after its batch.
                    with self._lock:
                        if state.job is not None:
                            state.job.stop()
                    _wait_quietly(future)
                except Exception:  # already reported by the pass
                    pass
            with self._lock:
                job, state.job = state.job, None
            if job is not None:
                _close_quietly(job)
        return states

    def _drop_all(self, *, hand_over: bool = False) -> None:
        with self._lock:
            tenants = list(self._states)
        if tenants:
            self._stop_work(tenants, hand_over=hand_over)

    # -- passes -------------------------------------------------------------------

    def schedule(self, tenant: str, head: int | None) -> None:
        """A pass of `tenant` is wanted (its head is now `head`; None: unknown)."""
        self._schedule(tenant, head)

    def _schedule(self, tenant: str, head: int | None) -> None:
        with self._lock:
            state = self._states.get(tenant)
            if state is None or state.releasing or self._stop.is_set():
                return
            if head is not None:
                if head <= state.seen_head:
                    return
                state.wanted_head = max(state.wanted_head, head)
            if state.retry_at > time.monotonic():
                return
            if state.running:
                state.again = True
                return
            state.future = self._pool.submit(self._pass, state)

    def _pass(self, state: _State) -> None:
        tenant = state.tenant.tenant
        result: PassResult | None = None
        error: BaseException | None = None
        with self._lock:
            if state.releasing and state.job is None:
                # Let go of before its pass started: nothing is in flight, and
                # opening its store now would only hold a connection until the
                # release gets to it (a worker letting go of a hundred tenants
                # at start held a hundred).
                state.future = None
                return
        try:
            evicted: TenantJob | None = None
            with self._lock:
                state.executing = True
                if state.job is None:
                    evicted = self._evict_for(state)
                    state.job = self.make_job(state.tenant)
                job = state.job
                if state.releasing:  # let go of before this pass had its job
                    job.stop()
            if evicted is not None:
                _close_quietly(evicted)
            result = job.run_pass()
        except Exception as exc:
            error = exc
            with self._lock:
                broken, state.job = state.job, None
            if broken is not None:
                _close_quietly(broken)
        now = time.monotonic()
        with self._lock:
            state.future = None
            state.executing = False
            state.last_pass = now
            if result is not None:
                state.seen_head = max(state.seen_head, state.wanted_head, result.position)
                if result.retry_in is not None:
                    state.retry_at = now + result.retry_in
                else:
                    state.retry_at = 0.0
                    state.backoff.reset()
            else:
                state.retry_at = now + state.backoff.next()
            again = state.again and not state.releasing
            state.again = False
            failing_before, reported = state.failing, state.reported
            state.failing = error is not None
            state.reported = state.reported or result is not None
        if state.releasing:
            return
        if error is not None:
            if not failing_before:
                self.notify(WorkerNotice("failed", tenant, detail=_reason(error)))
        elif result is not None:
            if failing_before:
                self.notify(WorkerNotice("recovered", tenant, position=result.position))
            elif not reported and result.retry_in is None:
                self.notify(
                    WorkerNotice(
                        "caught_up", tenant, position=result.position, applied=result.applied
                    )
                )
            for line in result.lines:
                self.notify(WorkerNotice("line", tenant, detail=line))
        if again:
            self._schedule(tenant, None)

    def _evict_for(self, state: _State) -> TenantJob | None:
        """With `open_jobs` jobs open, take the least recently worked idle one from
        its tenant to make room for `state`'s (called under the lock; the caller
        closes it)."""
        opened = [s for s in self._states.values() if s.job is not None]
        if len(opened) < self.settings.tuning.open_jobs:
            return None
        # A queued pass makes its job again when its turn comes; one on a
        # thread is using its job.
        idle = [s for s in opened if not s.executing and s is not state]
        if not idle:
            return None
        oldest = min(idle, key=lambda s: s.last_pass)
        job, oldest.job = oldest.job, None
        return job

    def _retry_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [
                t
                for t, s in self._states.items()
                if s.retry_at and s.retry_at <= now and not s.running
            ]
            for t in due:
                self._states[t].retry_at = 0.0
        for t in due:
            self._schedule(t, None)

    def _poll_sqlite(self) -> None:
        with self._lock:
            tenants = [t for t, s in self._states.items() if s.tenant.url.kind == "sqlite"]
        for t in tenants:
            self._schedule(t, None)

    def _close_idle(self) -> None:
        limit = time.monotonic() - self.settings.tuning.idle_close_s
        idle: list[TenantJob] = []
        with self._lock:
            opened = [s for s in self._states.values() if s.job is not None]
            closable = sorted((s for s in opened if not s.running), key=lambda s: s.last_pass)
            surplus = len(opened) - self.settings.tuning.open_jobs
            for state in closable:
                if state.last_pass < limit or surplus > 0:
                    assert state.job is not None
                    idle.append(state.job)
                    state.job = None
                    surplus -= 1
        for job in idle:
            _close_quietly(job)


class _ServerWatch(threading.Thread):
    """One listening connection to one PostgreSQL database (a "server" of tenant
    stores): on each notification, and every `poll_interval` seconds, it asks the
    head of every owned tenant's events table there in one statement and
    schedules the tenants whose head moved."""

    def __init__(self, worker: TenantWorker, tenant: Tenant) -> None:
        super().__init__(name=f"listen {tenant.server}", daemon=True)
        self.worker = worker
        self.url = tenant.url
        self._schemas: dict[str, str] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def add(self, tenant: Tenant) -> None:
        with self._lock:
            self._schemas[tenant.tenant] = tenant.url.schema

    def remove(self, tenant: str) -> None:
        with self._lock:
            self._schemas.pop(tenant, None)

    def close(self) -> None:
        self._closed.set()
        self.join(5)

    def run(self) -> None:
        # Here, not at the top: `relay status` and the other worker commands on a
        # SQLite store never load the PostgreSQL driver.
        import psycopg

        backoff = Backoff(self.worker.settings.tuning.max_backoff, first=0.5)
        while not self._done():
            try:
                with psycopg.connect(self.url.conninfo(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff.reset()
                    while not self._done():
                        self._probe(conn)
                        self._wait(conn)
            except psycopg.Error as exc:
                log.warning("workers: listening on %s failed (%s)", self.url.display(), exc)
                # Meanwhile every tenant there is looked at by its own pass.
                with self._lock:
                    tenants = list(self._schemas)
                for tenant in tenants:
                    self.worker.schedule(tenant, None)
                self._closed.wait(backoff.next())

    def _done(self) -> bool:
        return self._closed.is_set() or self.worker.stopping

    def _wait(self, conn: psycopg.Connection[Any]) -> None:
        deadline = time.monotonic() + self.worker.settings.tuning.poll_interval
        while not self._done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            woke = False
            for _ in conn.notifies(timeout=min(left, 0.25), stop_after=1):
                woke = True
            if woke:
                # Several commits in a row: one question answers them all.
                for _ in conn.notifies(timeout=0.005):
                    pass
                return

    def _probe(self, conn: psycopg.Connection[Any]) -> None:
        import psycopg

        with self._lock:
            schemas = dict(self._schemas)
        if not schemas:
            return
        statement, params = heads_statement(schemas)
        try:
            rows = conn.execute(statement.replace("?", "%s"), params).fetchall()
        except psycopg.Error as exc:
            if not isinstance(store_error(exc), TablesMissing):
                raise
            # A store without its tables: each pass says what is wrong.
            for tenant in schemas:
                self.worker.schedule(tenant, None)
            return
        for tenant, head in rows:
            self.worker.schedule(str(tenant), int(head or 0))


def _reason(exc: BaseException) -> str:
    return (
        f"{type(exc).__name__}: {first_line(exc)}"
        if not is_unavailable(exc)
        else (f"database unavailable: {first_line(exc)}")
    )


def _wait_quietly(future: Future[None]) -> None:
    try:
        future.result()
    except Exception:  # already reported by the pass
        pass


def _close_quietly(job: TenantJob) -> None:
    try:
        job.close()
    except Exception as exc:
        log.warning("workers: closing a tenant's work failed: %s", first_line(exc))
