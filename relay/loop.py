"""The relay loop: read after the acknowledged position, publish, follow.

Up to `RelayConfig.batches_in_flight` batches are in flight at a time: the next
ones are read and sent while the broker acknowledges the oldest. The acknowledged
position is recorded by a `PositionTracker`, so publishing never waits for the
database's write lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consumers.kafka_config import KafkaSettings
from ledger.application import LedgerApplication, first_line
from ledger.backoff import Backoff
from ledger.config import DatabaseURL, auto_migrate
from ledger.db import Connection
from ledger.errors import DatabaseUnavailable, TablesMissing, store_error
from ledger.reading import StoredRow, head_position, read_rows
from ledger.waiting import PollWaiter, Waiter, waiter_on
from relay.config import RelayConfig
from relay.errors import close_quietly, database_errors
from relay.position import PositionTracker
from relay.publisher import Publisher, PublishFailed
from relay.tracking import ensure_schema, load_tracking, try_relay_lock

log = logging.getLogger("ledger.relay")


@dataclass
class RelayProgress:
    """What the relay reports after each acknowledged batch and on state changes."""

    # publishing, caught_up, kafka_unavailable, database_unavailable, waiting_for_lock
    state: str
    position: int
    head: int
    published: int
    detail: str = ""

    @property
    def lag(self) -> int:
        """How many positions the acknowledged position is behind the head (never negative)."""
        return max(0, self.head - self.position)

    def as_dict(self) -> dict[str, Any]:
        """The progress as JSON-ready fields; `detail` only when there is one."""
        d: dict[str, Any] = {
            "state": self.state,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "published": self.published,
        }
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass
class RelayResult:
    """What a finished `Relay.run()` did: events published, the last acknowledged
    position, the head it last saw, and the time it took."""

    published: int
    position: int
    head: int
    elapsed_s: float


@dataclass
class Relay:
    """Publishes the stored events to a Kafka topic in position order, resuming after
    the recorded position: at least once, since what was sent but not yet recorded as
    acknowledged is sent again after a restart or a failure."""

    url: DatabaseURL
    kafka: KafkaSettings
    config: RelayConfig = field(default_factory=RelayConfig)
    on_progress: Callable[[RelayProgress], None] | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._finishing = threading.Event()
        self._publisher = Publisher(self.kafka, self.config, self._stop)
        self._conn: Connection | None = None
        self._tracker: PositionTracker | None = None
        self._waiter: Waiter = PollWaiter(self._stop)
        self._state = ""
        self._kafka_backoff = Backoff(self.config.max_backoff_s)
        self._caught_up_once = False
        self._migrated = False
        self._published = 0
        self._position = 0
        self._head = 0

    # -- public -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running `run()` to stop after the batch in hand (thread- and signal-safe)."""
        self._stop.set()

    def finish(self) -> None:
        """Make a running `run_pass()` end cleanly: read nothing more, wait for the
        broker to acknowledge what is in flight, then return (thread-safe). The
        relay is then done: a worker hands its store to another relay with no
        event sent twice."""
        self._finishing.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop has been asked for."""
        return self._stop.is_set()

    @property
    def state(self) -> str:
        """The relay's state (`RelayProgress.state`; "" before it started)."""
        return self._state

    def check_kafka(self) -> None:
        """Connect to the brokers and create the topic, or raise `KafkaUnavailable`."""
        self._publisher.connect()

    def run(self, follow: bool = False) -> RelayResult:
        """Publish everything after the tracked position; with `follow`, keep going
        as events are appended until `stop()`."""
        started = time.monotonic()
        try:
            self._start()
            db_backoff = Backoff(self.config.max_backoff_s)
            while not self._stop.is_set():
                if not self._catch_up(db_backoff):
                    break
                # Logged once: in follow mode every appended event ends in "caught up".
                self._set_state(
                    "caught_up",
                    f"caught up at position {self._position}"
                    + ("; following new events" if follow else ""),
                    quiet=self._caught_up_once,
                )
                self._caught_up_once = True
                if not follow:
                    break
                try:
                    self._wait_for_events()
                except database_errors() as exc:
                    self._database_failed(exc, db_backoff)
            return self._result(started)
        finally:
            self.close()

    def run_pass(self) -> RelayResult:
        """One pass for a worker that serves many stores: publish what was stored
        after the acknowledged position, and return once caught up (or stopped).
        The database connection, the producer and the position tracker stay open
        for the next pass until `close()`. A database failure is raised (the worker
        retries the pass later) instead of waited out here; Kafka failures are
        retried with back-off as by `run()`. With `RelayConfig.standby` off, a pass
        that finds another relay holding the lock returns at once, publishing
        nothing (state `waiting_for_lock`)."""
        started = time.monotonic()
        if self._tracker is None:
            self._start()
            if self._tracker is None:  # another relay holds the lock (or stopped)
                return self._result(started)
        if self._catch_up(None):
            self._set_state("caught_up", f"caught up at position {self._position}", quiet=True)
        return self._result(started)

    def close(self) -> None:
        """Record the acknowledged position and close the producer and the connections."""
        self._publisher.close(self._position)
        if self._tracker is not None:
            if not self._tracker.close():
                log.warning(
                    "%scould not record position %d before stopping; events after "
                    "position %s will be sent again",
                    self._who,
                    self._position,
                    self._tracker.saved,
                )
            self._tracker = None
        if self._conn is not None:
            close_quietly(self._conn)
            self._conn = None

    @property
    def _who(self) -> str:
        """What the relay's log lines start with: which tenant's, if a tenant's."""
        tenant = self.config.tenant
        return "relay: " if tenant is None else f"relay: tenant {tenant}: "

    def _result(self, started: float) -> RelayResult:
        return RelayResult(self._published, self._position, self._head, time.monotonic() - started)

    def _start(self) -> None:
        self._open_database()
        if self._conn is None:  # not standing by: another relay holds the lock
            return
        self._tracker = PositionTracker(self.url, self.config.tracking_name)
        if not self._publisher.connected and self.config.connect_at_start:
            self.check_kafka()
        self._set_state(
            "publishing",
            f"publishing to {self.config.topic} at {self.kafka.bootstrap} from position "
            f"{self._position} (head {self._head})",
            quiet=not self.config.standby,
        )

    def _catch_up(self, db_backoff: Backoff | None) -> bool:
        """Read, publish and await acknowledgements until nothing is left to read:
        True when caught up, False when stopped or finished. Database failures are waited out
        with `db_backoff`, or raised without one."""
        while not self._stop.is_set():
            try:
                rows = [] if self._finishing.is_set() else self._read()
            except database_errors() as exc:
                self._wait_out(exc, db_backoff)
                continue
            if self._conn is None:  # stopped while standing by, or not standing by
                return False
            if self._state == "database_unavailable":
                log.info("%sdatabase is back; resuming from position %d", self._who, self._position)
                self._set_state("publishing", "", quiet=True)
                if db_backoff is not None:
                    db_backoff.reset()
            try:
                if rows:
                    self._publisher.send(rows, self._position)
                # Several batches in flight: the next ones are read and sent while
                # the broker acknowledges the oldest. With nothing left to read,
                # everything is flushed.
                in_flight = self._publisher.in_flight
                while in_flight and (in_flight >= self.config.batches_in_flight or not rows):
                    self._await_oldest(flush=not rows)
                    in_flight = self._publisher.in_flight
            except PublishFailed as exc:
                if self._stop.is_set():
                    break
                self._kafka_failed(exc.reason)
                continue
            except database_errors() as exc:
                self._wait_out(exc, db_backoff)
                continue
            if rows:
                if self._state == "caught_up":
                    self._set_state("publishing", "", quiet=True)
                continue
            self._head = self._position
            return not self._finishing.is_set()
        return False

    # -- database -----------------------------------------------------------------

    def _wait_out(self, exc: BaseException, db_backoff: Backoff | None) -> None:
        """A database failure: waited out with `db_backoff`, or raised without one."""
        if db_backoff is None:
            self._database_lost(exc)
            raise exc
        self._database_failed(exc, db_backoff)

    def _open_database(self) -> None:
        if auto_migrate() and not self._migrated:
            # Like every command: create what is missing on first use.
            LedgerApplication(self.url).close()
        conn = Connection(self.url)
        try:
            if auto_migrate() and not self._migrated:
                ensure_schema(conn)
                self._migrated = True
            try:
                head_position(conn)
                load_tracking(conn, self.config.tracking_name)
            except database_errors() as exc:
                if not isinstance(store_error(exc), TablesMissing):
                    raise
                raise DatabaseUnavailable(
                    f"{self.url.display()} has no ledger tables: run `ledger db migrate` "
                    "(or leave LEDGER_AUTO_MIGRATE on)"
                ) from None
            if not self._acquire_lock(conn):
                conn.close()
                return
            # On a reconnect, what this process saw acknowledged may be ahead of the
            # (asynchronously) recorded position; another relay that held the lock
            # meanwhile may be ahead of both.
            recorded = load_tracking(conn, self.config.tracking_name).position
            self._position = max(self._position, recorded)
            self._publisher.forget(self._position)
            self._head = head_position(conn)
            self._waiter = waiter_on(conn, self._stop)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _acquire_lock(self, conn: Connection) -> bool:
        """One relay per tracking name at a time on PostgreSQL: two would interleave
        duplicates of each other's batches. A second one waits as a hot standby
        (or, with `RelayConfig.standby` off, gives up at once: False)."""
        if conn.kind != "postgresql":
            return True
        announced = False
        while not self._stop.is_set():
            if try_relay_lock(conn, self.config.tracking_name):
                if announced:
                    log.info("%slock acquired; taking over", self._who)
                    self._set_state("publishing", "", quiet=True)
                return True
            if not self.config.standby:
                self._set_state(
                    "waiting_for_lock",
                    f"another relay holds {self.config.tracking_name!r}; trying again later",
                    quiet=True,
                )
                return False
            if not announced:
                self._set_state(
                    "waiting_for_lock",
                    f"another relay holds {self.config.tracking_name!r}; standing by until "
                    "it stops",
                )
                announced = True
            self._stop.wait(2.0)
        return False

    def _read(self) -> list[StoredRow]:
        if self._conn is None:
            self._open_database()
            if self._conn is None:  # stopped while standing by, or not standing by
                return []
        assert self._conn is not None
        return read_rows(self._conn, self._publisher.sent, self.config.batch_size)

    def _database_failed(self, exc: BaseException, backoff: Backoff) -> None:
        self._database_lost(exc)
        self._stop.wait(backoff.next())

    def _database_lost(self, exc: BaseException) -> None:
        self._publisher.forget(self._position)
        reason = first_line(exc)
        self._set_state(
            "database_unavailable", f"database unavailable ({reason}); retrying with back-off"
        )
        if self._conn is not None:
            close_quietly(self._conn)
            self._conn = None

    def _wait_for_events(self) -> None:
        assert self._conn is not None
        cfg = self.config
        sqlite = self._conn.kind == "sqlite"
        self._waiter.wait(cfg.sqlite_poll_interval_s if sqlite else cfg.poll_interval_s)

    # -- Kafka --------------------------------------------------------------------

    def _kafka_failed(self, reason: str) -> None:
        self._publisher.close(self._position)
        self._set_state(
            "kafka_unavailable",
            f"Kafka unavailable ({reason}); retrying with back-off, will re-send everything "
            f"after position {self._position}",
        )
        self._stop.wait(self._kafka_backoff.next())

    def _await_oldest(self, flush: bool) -> None:
        """Wait for the oldest in-flight batch, then hand its last position to the tracker."""
        batch = self._publisher.await_oldest(flush, self._position)
        if self._state == "kafka_unavailable":
            # Only an acknowledgement proves Kafka is back, not a new connection.
            log.info("%sKafka is back; resuming after position %d", self._who, batch.last_position)
            self._set_state("publishing", "", quiet=True)
            self._kafka_backoff.reset()
        assert self._conn is not None and self._tracker is not None
        self._tracker.advance(batch.last_position)
        self._published += batch.count
        self._position = batch.last_position
        self._head = max(head_position(self._conn), batch.last_position)
        self._report()

    # -- reporting ----------------------------------------------------------------

    def _set_state(self, state: str, detail: str, *, quiet: bool = False) -> None:
        if state == self._state:
            return
        self._state = state
        # Reported first: a progress display ends its line before the log line.
        self._report(detail)
        if not quiet:
            level = logging.WARNING if state.endswith("unavailable") else logging.INFO
            log.log(level, "%s%s", self._who, detail)

    def _report(self, detail: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(
                RelayProgress(self._state, self._position, self._head, self._published, detail)
            )
