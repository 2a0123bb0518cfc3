"""The outbox relay: every stored event, in position order, onto a Kafka topic.

Delivery is at-least-once and never out of order per customer:

- rows are read with `position > tracked` in position order; positions are assigned
  under the events table's write lock, so nothing committed later can appear below
  the tracked position, and holes are simply skipped;
- each message is keyed by `customer_id`, so one customer's events share a partition;
  the producer is idempotent with acks=all and at most 5 requests in flight, which
  keeps a partition's order even when it retries;
- the tracked position moves only after the broker acknowledged every message up
  to it. On any failure the producer is thrown away (an idempotent producer that
  lived through a broker restart never recovers) and everything after the
  acknowledged position is sent again.

The tracked position lives in `relay_tracking` in the ledger's own database, written
by a thread of its own (`PositionTracker`) so that publishing never waits for the
database's write lock. Two batches are in flight at a time: the next one is read and
sent while the broker acknowledges the previous one.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from consumers.kafka_config import (
    DEFAULT_TOPIC,
    KafkaSettings,
    KafkaUnavailable,
    connect_or_fail,
    ensure_topic,
)
from ledger.application import LedgerApplication
from ledger.config import DatabaseURL, auto_migrate
from ledger.db import Connection, DatabaseUnavailable
from ledger.reading import StoredRow, head_position, read_rows
from ledger.stores.rows import EVENTS_TABLE

log = logging.getLogger("ledger.relay")

TRACKING_TABLE = "relay_tracking"
# The channel the eventsourcing library NOTIFYs on every insert (its events table name).
NOTIFY_CHANNEL = "ledger_events"
DEFAULT_BATCH_SIZE = 1000
DEFAULT_PARTITIONS = 6
# A batch is cut short once its values reach this size, so huge events cannot pile
# up unbounded in the producer's memory.
MAX_PENDING_BYTES = 16 * 1024 * 1024
# First key of the relay's advisory locks (schema creation, one relay per name).
_LOCK_CLASS = 7243002


# -- schema and tracking ---------------------------------------------------------------


def ensure_schema(conn: Connection) -> None:
    """Create the relay's tracking table if missing (idempotent, safe concurrently)."""
    with conn.schema_transaction():
        if conn.kind == "sqlite":
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ("
                "name TEXT PRIMARY KEY, position INTEGER NOT NULL, updated_at TEXT NOT NULL)"
            )
            return
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} ("
            "name text PRIMARY KEY, position bigint NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now())"
        )


@dataclass(frozen=True)
class Tracking:
    name: str
    position: int
    updated_at: datetime | None


def load_tracking(conn: Connection, name: str) -> Tracking:
    row = conn.fetchone(
        f"SELECT position, updated_at FROM {TRACKING_TABLE} WHERE name = ?", (name,)
    )
    if row is None:
        return Tracking(name, 0, None)
    updated = row[1]
    if isinstance(updated, str):
        updated = datetime.fromisoformat(updated)
    return Tracking(name, int(row[0]), updated)


def tracked_relays(conn: Connection) -> list[str]:
    """The names of the relays that have recorded a position."""
    return [str(r[0]) for r in conn.fetchall(f"SELECT name FROM {TRACKING_TABLE} ORDER BY name")]


def save_position(conn: Connection, name: str, position: int, *, force: bool = False) -> None:
    """Record `position` as relayed. Never moves backwards unless `force` (a reset):
    a second relay that slipped past the lock must not undo the first one's progress."""
    now: Any = datetime.now(UTC)
    if conn.kind == "sqlite":
        now = now.isoformat()
    guard = "" if force else f" WHERE {TRACKING_TABLE}.position < excluded.position"
    conn.execute(
        f"INSERT INTO {TRACKING_TABLE} (name, position, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
        f"updated_at = excluded.updated_at{guard}",
        (name, position, now),
    )


def try_relay_lock(conn: Connection, name: str) -> bool:
    """Take the session-level lock that lets one relay per tracking name run
    (PostgreSQL only; always True on SQLite). Held until the connection closes."""
    if conn.kind != "postgresql":
        return True
    key = zlib.crc32(f"ledger relay {name}".encode()) - 2**31
    row = conn.fetchone("SELECT pg_try_advisory_lock(?, ?)", (_LOCK_CLASS, key))
    return bool(row and row[0])


def pending_count(conn: Connection, after: int) -> int:
    row = conn.fetchone(f"SELECT COUNT(*) FROM {EVENTS_TABLE} WHERE notification_id > ?", (after,))
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class RelayStatus:
    name: str
    position: int
    head: int
    lag: int
    updated_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def relay_status(conn: Connection, name: str) -> RelayStatus:
    tracking = load_tracking(conn, name)
    return RelayStatus(
        name=name,
        position=tracking.position,
        head=head_position(conn),
        lag=pending_count(conn, tracking.position),
        updated_at=tracking.updated_at,
    )


# -- messages --------------------------------------------------------------------------

Header = tuple[str, bytes]


class RelayFatal(RuntimeError):
    """A failure that retrying cannot fix; the message says what to change."""


# The layout `ledger.mapper.stored_state` writes: the ledger's fields, then the
# producer's envelope. Anchored at the first byte, so these can only be top-level
# keys. Anything else (older layouts, escapes) takes the json.loads path.
_FAST_HEAD = re.compile(
    rb'\{"event_id":"([0-9a-f-]{36})","recorded_at":"[^"\\]*","schema_version":(\d+),'
    rb'"type":"[^"\\]*","customer_id":"([^"\\]*)"'
)


def build_message(row: StoredRow) -> tuple[bytes, bytes, list[Header]]:
    """Key, value and headers for one stored row.

    The value is the stored JSON with `position`, `stream_id` and `stream_version`
    spliced in before its closing brace: the stored bytes are already the
    envelope's JSON, and decoding and re-encoding them would cost more than the
    rest of the relay's own work put together."""
    state = row.state.rstrip()
    m = _FAST_HEAD.match(state)
    if m is not None and state.endswith(b"}"):
        event_id, schema_version, customer_id = m.group(1), m.group(2), m.group(3)
    else:
        event_id, schema_version, customer_id = _slow_fields(row, state)
    value = b'%s,"position":%d,"stream_id":"%s","stream_version":%d}' % (
        state[:-1],
        row.position,
        str(row.stream_id).encode(),
        row.stream_version,
    )
    headers = [
        ("event_id", event_id),
        ("type", row.type.encode()),
        ("schema_version", schema_version),
        ("position", b"%d" % row.position),
    ]
    return customer_id, value, headers


def _slow_fields(row: StoredRow, state: bytes) -> tuple[bytes, bytes, bytes]:
    try:
        envelope = json.loads(state)
        customer_id = envelope["customer_id"]
        event_id = envelope["event_id"]
        schema_version = int(envelope["schema_version"])
        if not isinstance(customer_id, str) or not isinstance(event_id, str):
            raise TypeError("customer_id and event_id must be strings")
    except (ValueError, KeyError, TypeError) as exc:
        raise RelayFatal(
            f"stored event at position {row.position} is not a plain JSON envelope "
            f"({type(exc).__name__}: {exc}); the relay cannot publish an encrypted or "
            "compressed store"
        ) from None
    if not isinstance(envelope, dict) or not state.endswith(b"}") or "position" in envelope:
        raise RelayFatal(f"stored event at position {row.position} has an unexpected shape")
    return event_id.encode(), b"%d" % schema_version, customer_id.encode()


class PositionTracker:
    """Records the acknowledged position from a thread of its own.

    Publishing never waits for the tracking write: on SQLite, a busy writer can keep
    the database's single write lock for seconds (its lock is not fair), and on any
    store a slow write would otherwise add to every event's latency. Writes are
    coalesced (the newest acknowledged position wins) and never go backwards, so the
    recorded position only ever trails what Kafka acknowledged: after a crash a
    little more is sent again, nothing is skipped."""

    def __init__(self, url: DatabaseURL, name: str, interval_s: float = 0.2) -> None:
        self.url = url
        self.name = name
        self.interval_s = interval_s
        self.saved: int | None = None
        self._pending: int | None = None
        self._closing = False
        self._failing = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="relay-tracking", daemon=True)
        self._thread.start()

    def advance(self, position: int) -> None:
        with self._cv:
            if self._pending is None or position > self._pending:
                self._pending = position
            self._cv.notify()

    def close(self, timeout_s: float = 30.0) -> bool:
        """Write what is pending and stop; False if it could not be written in time."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout_s)
        return not self._thread.is_alive() and self._pending is None

    def _loop(self) -> None:
        conn: Connection | None = None
        backoff = _Backoff(5.0)
        try:
            while True:
                with self._cv:
                    while self._pending is None and not self._closing:
                        self._cv.wait()
                    position = self._pending
                    if position is None:
                        return
                try:
                    if conn is None:
                        conn = Connection(self.url)
                    save_position(conn, self.name, position)
                except _DATABASE_ERRORS as exc:
                    if conn is not None:
                        _close_quietly(conn)
                        conn = None
                    if not self._failing:
                        log.warning(
                            "relay: cannot record position %d (%s); retrying",
                            position,
                            _describe(exc),
                        )
                        self._failing = True
                    time.sleep(backoff.next())
                    continue
                if self._failing:
                    log.info("relay: recording positions again (at %d)", position)
                    self._failing = False
                backoff.reset()
                with self._cv:
                    self.saved = position
                    if self._pending == position:
                        self._pending = None
                    closing = self._closing
                if not closing:
                    time.sleep(self.interval_s)
        finally:
            if conn is not None:
                _close_quietly(conn)


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:  # a broken connection is being discarded anyway
        pass


# -- the relay -------------------------------------------------------------------------


@dataclass
class RelayConfig:
    topic: str = DEFAULT_TOPIC
    # Tracking row name; defaults to the topic, so relaying to a second topic starts
    # that topic from the beginning.
    name: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    partitions: int = DEFAULT_PARTITIONS
    # -1: the cluster's default (managed clusters want 3, a dev broker has 1).
    replication_factor: int = -1
    # Follow mode: on PostgreSQL a NOTIFY wakes the relay at once and this is only the
    # fallback; SQLite has no notifications and is polled at this interval.
    poll_interval_s: float = 1.0
    sqlite_poll_interval_s: float = 0.02
    delivery_timeout_s: float = 30.0
    max_backoff_s: float = 30.0
    linger_ms: int = 5
    compression: str | None = None
    max_request_size: int = 1024 * 1024

    @property
    def tracking_name(self) -> str:
        return self.name or self.topic


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
        return max(0, self.head - self.position)

    def as_dict(self) -> dict[str, Any]:
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
    published: int
    position: int
    head: int
    elapsed_s: float


class _Backoff:
    def __init__(self, maximum: float, first: float = 0.25) -> None:
        self.first = first
        self.maximum = maximum
        self.current = first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.maximum, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.first


_DATABASE_ERRORS = (psycopg.Error, sqlite3.Error, DatabaseUnavailable)


@dataclass
class _InFlight:
    futures: list[Any]
    last_position: int


class _PublishFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Producer errors that no amount of retrying fixes.
_FATAL_ERRORS = (
    "MessageSizeTooLargeError",
    "RecordListTooLargeError",
    "InvalidTopicError",
    "TopicAuthorizationFailedError",
    "ClusterAuthorizationFailedError",
    "TransactionalIdAuthorizationFailedError",
)


@dataclass
class Relay:
    url: DatabaseURL
    kafka: KafkaSettings
    config: RelayConfig = field(default_factory=RelayConfig)
    on_progress: Callable[[RelayProgress], None] | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._producer: Any = None
        self._conn: Connection | None = None
        self._tracker: PositionTracker | None = None
        # Sent but not yet acknowledged, oldest first; `_sent` is the last position sent.
        self._in_flight: deque[_InFlight] = deque()
        self._sent = 0
        self._state = ""
        self._kafka_backoff = _Backoff(self.config.max_backoff_s)
        self._caught_up_once = False
        self._migrated = False
        self._published = 0
        self._position = 0
        self._head = 0

    # -- public -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running `run()` to stop after the batch in hand (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def check_kafka(self) -> None:
        """Connect to the brokers and create the topic, or raise `KafkaUnavailable`."""
        self._producer = self._connect()

    def run(self, follow: bool = False) -> RelayResult:
        """Publish everything after the tracked position; with `follow`, keep going
        as events are appended until `stop()`."""
        started = time.monotonic()
        try:
            self._open_database()
            self._tracker = PositionTracker(self.url, self.config.tracking_name)
            if self._producer is None:
                self.check_kafka()
            db_backoff = _Backoff(self.config.max_backoff_s)
            self._set_state(
                "publishing",
                f"publishing to {self.config.topic} at {self.kafka.bootstrap} from position "
                f"{self._position} (head {self._head})",
            )
            while not self._stop.is_set():
                try:
                    rows = self._read()
                except _DATABASE_ERRORS as exc:
                    self._database_failed(exc, db_backoff)
                    continue
                if self._state == "database_unavailable":
                    log.info("relay: database is back; resuming from position %d", self._position)
                    self._set_state("publishing", "", quiet=True)
                    db_backoff.reset()
                try:
                    if rows:
                        self._send(rows)
                    # Two batches in flight: the next one is read and sent while the
                    # broker acknowledges the previous one. With nothing left to read,
                    # everything is flushed.
                    while self._in_flight and (len(self._in_flight) > 1 or not rows):
                        self._await_oldest(flush=not rows)
                except _PublishFailed as exc:
                    if self._stop.is_set():
                        break
                    self._kafka_failed(exc.reason)
                    continue
                except _DATABASE_ERRORS as exc:
                    self._database_failed(exc, db_backoff)
                    continue
                if rows:
                    if self._state == "caught_up":
                        self._set_state("publishing", "", quiet=True)
                    continue
                self._head = self._position
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
                except _DATABASE_ERRORS as exc:
                    self._database_failed(exc, db_backoff)
            return RelayResult(
                self._published, self._position, self._head, time.monotonic() - started
            )
        finally:
            self._close_producer()
            if self._tracker is not None:
                if not self._tracker.close():
                    log.warning(
                        "relay: could not record position %d before stopping; events after "
                        "position %s will be sent again",
                        self._position,
                        self._tracker.saved,
                    )
                self._tracker = None
            if self._conn is not None:
                _close_quietly(self._conn)
                self._conn = None

    # -- database -----------------------------------------------------------------

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
            except (psycopg.errors.UndefinedTable, sqlite3.OperationalError) as exc:
                if "no such table" not in str(exc) and not isinstance(
                    exc, psycopg.errors.UndefinedTable
                ):
                    raise
                raise DatabaseUnavailable(
                    f"{self.url.display()} has no ledger tables: run `ledger db migrate` "
                    "(or leave LEDGER_AUTO_MIGRATE on)"
                ) from None
            self._acquire_lock(conn)
            # On a reconnect, what this process saw acknowledged may be ahead of the
            # (asynchronously) recorded position; another relay that held the lock
            # meanwhile may be ahead of both.
            recorded = load_tracking(conn, self.config.tracking_name).position
            self._position = max(self._position, recorded)
            self._forget_in_flight()
            self._head = head_position(conn)
            if conn.kind == "postgresql":
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _acquire_lock(self, conn: Connection) -> None:
        """One relay per tracking name at a time on PostgreSQL: two would interleave
        duplicates of each other's batches. A second one waits as a hot standby."""
        if conn.kind != "postgresql":
            return
        announced = False
        while not self._stop.is_set():
            if try_relay_lock(conn, self.config.tracking_name):
                if announced:
                    log.info("relay: lock acquired; taking over")
                    self._set_state("publishing", "", quiet=True)
                return
            if not announced:
                self._set_state(
                    "waiting_for_lock",
                    f"another relay holds {self.config.tracking_name!r}; standing by until "
                    "it stops",
                )
                announced = True
            self._stop.wait(2.0)

    def _read(self) -> list[StoredRow]:
        if self._conn is None:
            self._open_database()
            if self._stop.is_set():  # stopped while standing by for the lock
                return []
        assert self._conn is not None
        return read_rows(self._conn, self._sent, self.config.batch_size)

    def _database_failed(self, exc: BaseException, backoff: _Backoff) -> None:
        self._forget_in_flight()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._set_state(
            "database_unavailable", f"database unavailable ({reason}); retrying with back-off"
        )
        if self._conn is not None:
            _close_quietly(self._conn)
            self._conn = None
        self._stop.wait(backoff.next())

    def _wait_for_events(self) -> None:
        assert self._conn is not None
        if self._conn.kind == "sqlite":
            self._stop.wait(self.config.sqlite_poll_interval_s)
            return
        deadline = time.monotonic() + self.config.poll_interval_s
        raw = self._conn.raw
        # Short slices so a stop request is seen within half a second.
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for _ in raw.notifies(timeout=min(0.5, remaining), stop_after=1):
                return

    # -- Kafka --------------------------------------------------------------------

    def _connect(self) -> Any:
        from kafka import KafkaProducer

        cfg = self.config
        kwargs = self.kafka.client_kwargs()
        delivery_ms = int(cfg.delivery_timeout_s * 1000)

        def make() -> Any:
            # Every (re)connect: a broker that came back empty has lost the topic.
            ensure_topic(self.kafka, cfg.topic, cfg.partitions, cfg.replication_factor)
            return KafkaProducer(
                **kwargs,
                acks="all",
                enable_idempotence=True,
                max_in_flight_requests_per_connection=5,
                linger_ms=cfg.linger_ms,
                batch_size=256 * 1024,
                compression_type=cfg.compression,
                max_request_size=cfg.max_request_size,
                delivery_timeout_ms=delivery_ms,
                request_timeout_ms=max(1000, min(30_000, delivery_ms - cfg.linger_ms - 100)),
                # A missing topic (a broker that came back empty) must fail fast and
                # be recreated with our partition count, not auto-created with the
                # broker's.
                allow_auto_create_topics=False,
                max_block_ms=max(1000, min(10_000, delivery_ms)),
            )

        return connect_or_fail(self.kafka, make, cancel=self._stop)

    def _forget_in_flight(self) -> None:
        """Whatever is in flight is sent again from the acknowledged position."""
        self._in_flight.clear()
        self._sent = self._position

    def _close_producer(self) -> None:
        self._forget_in_flight()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                # Nothing left in it is needed: unacknowledged messages are re-sent.
                producer.close(timeout=0)
            except Exception:  # a broken producer may fail to close; it is discarded anyway
                pass

    def _kafka_failed(self, reason: str) -> None:
        self._close_producer()
        self._set_state(
            "kafka_unavailable",
            f"Kafka unavailable ({reason}); retrying with back-off, will re-send everything "
            f"after position {self._position}",
        )
        self._stop.wait(self._kafka_backoff.next())

    def _send(self, rows: Sequence[StoredRow]) -> None:
        """Queue `rows` on the producer as one in-flight batch (no waiting for acks).

        Stops early once the batch's values reach MAX_PENDING_BYTES; the rest is
        read again next time."""
        if self._producer is None:
            try:
                self._producer = self._connect()
            except KafkaUnavailable as exc:
                raise _PublishFailed(str(exc)) from None
        producer = self._producer
        topic = self.config.topic
        futures: list[Any] = []
        pending_bytes = 0
        last = self._sent
        try:
            for row in rows:
                key, value, headers = build_message(row)
                futures.append(producer.send(topic, value=value, key=key, headers=headers))
                last = row.position
                pending_bytes += len(value)
                if pending_bytes >= MAX_PENDING_BYTES:
                    break
        except (RelayFatal, _PublishFailed):
            raise
        except Exception as exc:
            self._check_fatal(exc)
            raise _PublishFailed(_describe(exc)) from None
        finally:
            if futures:
                self._in_flight.append(_InFlight(futures, last))
                self._sent = last

    def _await_oldest(self, flush: bool) -> None:
        """Wait until the oldest in-flight batch is acknowledged, then hand its last
        position to the tracker. Acks that never come (broker gone) are waited out
        by the delivery timeout; a stop request does not have to wait for that."""
        batch = self._in_flight[0]
        producer = self._producer
        deadline = time.monotonic() + self.config.delivery_timeout_s + 5
        if flush:
            while True:
                try:
                    producer.flush(timeout=0.5)
                    break
                except Exception as exc:
                    if type(exc).__name__ != "KafkaTimeoutError":
                        raise _PublishFailed(_describe(exc)) from None
                self._check_waiting(deadline)
        for future in batch.futures:
            while not future.is_done:
                try:
                    future.get(timeout=0.5)
                except Exception:  # a failure is read from the future below
                    if not future.is_done:
                        self._check_waiting(deadline)
            if not future.succeeded():
                error = future.exception
                self._check_fatal(error)
                raise _PublishFailed(_describe(error))
        self._in_flight.popleft()
        if self._state == "kafka_unavailable":
            # Only an acknowledgement proves Kafka is back, not a new connection.
            log.info("relay: Kafka is back; resuming after position %d", batch.last_position)
            self._set_state("publishing", "", quiet=True)
            self._kafka_backoff.reset()
        assert self._conn is not None and self._tracker is not None
        self._tracker.advance(batch.last_position)
        self._published += len(batch.futures)
        self._position = batch.last_position
        self._head = max(head_position(self._conn), batch.last_position)
        self._report()

    def _check_waiting(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise _PublishFailed("no acknowledgement within the delivery timeout")
        if self._stop.is_set():
            raise _PublishFailed("stopping before the broker acknowledged the batch")

    def _check_fatal(self, exc: BaseException | None) -> None:
        if exc is not None and type(exc).__name__ in _FATAL_ERRORS:
            raise RelayFatal(
                f"Kafka refused to store the event after position {self._position} on "
                f"{self.config.topic}: {_describe(exc)}"
            )

    # -- reporting ----------------------------------------------------------------

    def _set_state(self, state: str, detail: str, *, quiet: bool = False) -> None:
        if state == self._state:
            return
        self._state = state
        # Reported first: a progress display ends its line before the log line.
        self._report(detail)
        if not quiet:
            level = logging.WARNING if state.endswith("unavailable") else logging.INFO
            log.log(level, "relay: %s", detail)

    def _report(self, detail: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(
                RelayProgress(self._state, self._position, self._head, self._published, detail)
            )


def _describe(exc: BaseException | None) -> str:
    """One line for a log: kafka-python's errors read "[Error 59] UnknownProducerIdError: None"."""
    if exc is None:
        return "unknown failure"
    name = type(exc).__name__
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    text = re.sub(r"^\[Error -?\d+\]\s*", "", text)
    text = re.sub(r":\s*None$", "", text)
    if not text or text == name:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
