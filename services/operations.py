"""Operating the ledger: the projections' status, running, following,
rebuilding and resetting them, and the Kafka relay's run, status and reset.

Each function takes the projections by name (none: every one) and answers
with plain values; progress goes to the caller's callbacks, and a caller
stops a long run by setting the `threading.Event` it passes (a signal
handler, say). The relay is imported only by the relay's functions: a process
that reads or rebuilds tabs does not load the Kafka client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.backoff import MAX_BACKOFF_S
from ledger.config import DatabaseURL, auto_migrate
from ledger.db import Connection
from ledger.reading import head_position
from projections import rebuild as replay
from projections import registry
from projections.base import Projection
from projections.following import Follower, FollowNotice
from projections.loading import DEFAULT_CHECKPOINT_EVENTS
from projections.rebuild import DEFAULT_REBUILD_BATCH_SIZE, RebuildReport
from projections.runner import DEFAULT_BATCH_SIZE, Runner
from projections.targets import Target
from services.bootstrap import Services, prepare_store
from services.errors import Category, ServiceError, service_errors

if TYPE_CHECKING:
    from consumers.kafka_config import KafkaSettings
    from relay import Relay, RelayConfig, RelayProgress, RelayResult
    from relay.tracking import RelayStatus

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHECKPOINT_EVENTS",
    "DEFAULT_REBUILD_BATCH_SIZE",
    "PROJECTION_NAMES",
    "CatchUpReport",
    "FollowNotice",
    "RebuildReport",
    "RelayDefaults",
    "RelayOptions",
    "RelayProgress",
    "RelayResult",
    "RelayRun",
    "RelayStatus",
    "catch_up_projections",
    "discard_rebuild",
    "follow_projections",
    "projection_names",
    "projections_status",
    "rebuild_projections",
    "relay_config",
    "relay_defaults",
    "relay_position",
    "reset_projections",
    "reset_relay",
]

# Every projection's name, in the order they are run and shown.
PROJECTION_NAMES: tuple[str, ...] = tuple(registry.NAMES)


def _chosen(names: Sequence[str]) -> list[Projection]:
    with service_errors():
        return registry.select(names)


def projection_names(names: Sequence[str]) -> list[str]:
    """The projections `names` denotes (none: every one), checked: an unknown
    name is a usage error that lists the known ones."""
    return [p.name for p in _chosen(names)]


def projections_status(conn: Connection) -> dict[str, Any]:
    """`ledger projections status --format json`'s answer."""
    from projections.status import projection_status

    with service_errors():
        head, rows = projection_status(conn, registry.select(()))
    return {"head": head, "projections": [r.as_json() for r in rows]}


# -- running ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CatchUpReport:
    """What one catch-up did: events applied, the position reached, the head
    when it ended, and why any projection stopped at an event it cannot apply."""

    projections: list[str]
    applied: int
    position: int
    head: int
    stopped: list[str]


def catch_up_projections(
    conn: Connection,
    names: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    stop: threading.Event | None = None,
) -> CatchUpReport:
    """Apply every stored event the projections have not seen, a transaction per
    batch together with their position, until the head or until `stop` is set."""
    chosen = _chosen(names)
    with service_errors():
        prepare_store(conn)
        runner = Runner(conn, [Target.live(p) for p in chosen], batch_size)
        applied = runner.catch_up(stop=stop)
        position, head = runner.position(), head_position(conn)
    return CatchUpReport(
        projections=[p.name for p in chosen],
        applied=applied,
        position=position,
        head=head,
        stopped=sorted(runner.stopped.values()),
    )


def follow_projections(
    url: DatabaseURL,
    names: Sequence[str],
    *,
    stop: threading.Event,
    on_notice: Callable[[FollowNotice], None],
    batch_size: int = DEFAULT_BATCH_SIZE,
    interval: float = 1.0,
    max_backoff: float = MAX_BACKOFF_S,
) -> None:
    """Catch up, then keep applying new events until `stop` is set: woken by
    LISTEN/NOTIFY on PostgreSQL (polling every `interval` s as a fallback),
    polling on SQLite, retrying with back-off while the database is away.
    `on_notice` hears each change of state."""
    follower = Follower(
        url,
        _chosen(names),
        stop=stop,
        notify=on_notice,
        batch_size=batch_size,
        interval=interval,
        max_backoff=max_backoff,
        prepare=prepare_store,
    )
    with service_errors():
        follower.run()


# -- rebuilding -------------------------------------------------------------------------


def rebuild_projections(
    conn: Connection,
    names: Sequence[str],
    *,
    batch_size: int = DEFAULT_REBUILD_BATCH_SIZE,
    checkpoint_events: int = DEFAULT_CHECKPOINT_EVENTS,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_phase: Callable[[str, int], None] | None = None,
) -> RebuildReport:
    """Replay every event into fresh tables, then swap them in atomically
    (resuming a rebuild that was killed). `on_start(head)` is told the head
    before the replay begins, `on_progress(position, events)` after each batch,
    `on_phase(phase, head)` as each phase starts."""
    chosen = _chosen(names)
    with service_errors():
        prepare_store(conn)
        if on_start is not None:
            on_start(head_position(conn))

        def phase(name: str) -> None:
            if on_phase is not None:
                on_phase(name, head_position(conn))

        return replay.rebuild(
            conn,
            chosen,
            batch_size=batch_size,
            checkpoint_events=checkpoint_events,
            progress=on_progress,
            phase=phase,
        )


def discard_rebuild(conn: Connection, names: Sequence[str]) -> list[str]:
    """Drop what an unfinished rebuild of these projections left behind; returns
    the projections it had (none: there was nothing to discard)."""
    chosen = _chosen(names)
    with service_errors():
        prepare_store(conn)
        return replay.discard(conn, chosen)


def reset_projections(conn: Connection, names: Sequence[str]) -> list[str]:
    """Empty read models and set them back to position 0; returns their names."""
    chosen = _chosen(names)
    with service_errors():
        prepare_store(conn)
        replay.reset(conn, chosen)
    return [p.name for p in chosen]


# -- the relay --------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayDefaults:
    """What a relay uses unless told otherwise."""

    batch_size: int
    partitions: int
    compression: str


def relay_defaults() -> RelayDefaults:
    """The relay's defaults (imports the relay)."""
    from relay.config import DEFAULT_BATCH_SIZE, DEFAULT_COMPRESSION, DEFAULT_PARTITIONS

    return RelayDefaults(DEFAULT_BATCH_SIZE, DEFAULT_PARTITIONS, DEFAULT_COMPRESSION)


@dataclass(frozen=True)
class RelayOptions:
    """How a relay runs; None is the relay's default. `name` is the tracking
    name (default: the topic); `compression` "none" sends batches uncompressed;
    `poll_interval_s` replaces both of the relay's polling intervals."""

    topic: str
    name: str | None = None
    batch_size: int | None = None
    partitions: int | None = None
    replication_factor: int = -1
    compression: str | None = None
    delivery_timeout_s: float = 30.0
    max_backoff_s: float = MAX_BACKOFF_S
    poll_interval_s: float | None = None


def relay_config(options: RelayOptions) -> RelayConfig:
    """The relay's configuration from `options` (imports the relay)."""
    from relay import RelayConfig

    config = RelayConfig(
        topic=options.topic,
        name=options.name,
        replication_factor=options.replication_factor,
        delivery_timeout_s=options.delivery_timeout_s,
        max_backoff_s=options.max_backoff_s,
    )
    if options.batch_size is not None:
        config.batch_size = options.batch_size
    if options.partitions is not None:
        config.partitions = options.partitions
    if options.compression is not None:
        config.compression = None if options.compression == "none" else options.compression
    if options.poll_interval_s is not None:
        config.poll_interval_s = config.sqlite_poll_interval_s = options.poll_interval_s
    return config


class RelayRun:
    """One relay publishing stored events to Kafka, from the tracked position on.

    `stop()` may be called from a signal handler or another thread."""

    def __init__(
        self,
        url: DatabaseURL,
        kafka: KafkaSettings,
        options: RelayOptions,
        on_progress: Callable[[RelayProgress], None] | None = None,
    ) -> None:
        from relay import Relay

        config = relay_config(options)
        self.topic = config.topic
        self.tracking_name = config.tracking_name
        self._relay: Relay = Relay(url, kafka, config, on_progress=on_progress)

    def stop(self) -> None:
        """Stop after the batch in hand."""
        self._relay.stop()

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called."""
        return self._relay.stopping

    def run(self, follow: bool = False) -> RelayResult:
        """Open the store, then connect to Kafka (raising `KafkaUnavailable` if
        it cannot), then publish every event after the tracked position; with
        `follow`, keep going until stopped. An event Kafka refuses for good is
        a REJECTED error. The store comes first: a store the relay cannot read
        fails the run before the topic is created."""
        from relay import RelayFatal

        try:
            return self._relay.run(follow=follow)
        except RelayFatal as exc:
            raise ServiceError(Category.REJECTED, str(exc)) from None


def relay_position(services: Services, tracking_name: str) -> RelayStatus:
    """A relay's tracked position, the head and the lag between them. Reads
    the database only (creating the tables on first use unless
    LEDGER_AUTO_MIGRATE=0)."""
    from relay.tracking import ensure_schema, relay_status

    if auto_migrate():
        services.app()  # creates the events table on first use, like every command
    with services.connect() as conn:
        if auto_migrate():
            ensure_schema(conn)
        return relay_status(conn, tracking_name)


def reset_relay(conn: Connection, tracking_name: str, position: int) -> RelayStatus:
    """Move a stopped relay's tracked position (0: publish everything again); a
    CONFLICT error while it runs (detected on PostgreSQL by its lock)."""
    from relay.tracking import ensure_schema, relay_status, save_position, try_relay_lock

    if auto_migrate():
        ensure_schema(conn)
    if not try_relay_lock(conn, tracking_name):
        raise ServiceError(
            Category.CONFLICT,
            f"relay {tracking_name!r} is running (it holds its lock): stop it first",
        )
    save_position(conn, tracking_name, position, force=True)
    return relay_status(conn, tracking_name)
