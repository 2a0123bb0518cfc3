"""Workers that share a hosted deployment's tenants out among themselves:
`ledger projections run --follow --tenants ...` and `ledger relay run --follow
--tenants ...` (docs/scaling.md, "Workers").

Each worker claims its share of the tenant directory's tenants with PostgreSQL
advisory locks on the directory's database (`ledger.claims`), wakes on
LISTEN/NOTIFY with one listening connection per server and runs one tenant's pass
at a time in a small thread pool (`ledger.tenant_workers`). A pass is the
single-store code: `projections.following.CatchUpPass` (the projection runner's
catch-up) or `relay.Relay.run_pass` (the relay loop's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ledger.config import ConfigError, DatabaseURL
from ledger.tenant_workers import (
    PassResult,
    TenantJob,
    TenantWorker,
    WorkerNotice,
    WorkerSettings,
    WorkerTuning,
)
from ledger.tenants import Tenant, check_tenant_id
from projections import registry
from projections.following import CatchUpPass
from services.bootstrap import prepare_store
from services.errors import Category, ServiceError, service_errors
from services.tenants import directory

if TYPE_CHECKING:
    from consumers.kafka_config import KafkaSettings
    from relay import Relay
    from services.operations import RelayOptions

__all__ = [
    "TenantWorkers",
    "WorkerNotice",
    "WorkerOptions",
    "WorkerTuning",
    "parse_selection",
    "takeover_bound",
]

# A tenant's relay that found another relay holding its store's lock tries again
# after this many seconds.
LOCK_RETRY_S = 2.0


def parse_selection(text: str) -> frozenset[str] | None:
    """`--tenants`: "all" (None: every tenant of the directory) or a comma-separated
    list of tenant ids; a malformed id or an empty list is a usage error."""
    if text.strip() == "all":
        return None
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ServiceError(Category.USAGE, "--tenants: give `all` or a comma-separated list")
    try:
        return frozenset(check_tenant_id(t) for t in ids)
    except ConfigError as exc:
        raise ServiceError(Category.USAGE, f"--tenants: {exc}") from exc


def takeover_bound(claim_interval: float) -> float:
    """How long after a worker died its tenants may wait for a live peer to claim
    them, in seconds (the server frees a dead session's locks at once): the next
    round of a peer starts within one interval, and a round itself is quick; one
    more interval covers a peer that counted the dead worker in a round that was
    already running."""
    return math.ceil(2 * claim_interval)


@dataclass(frozen=True)
class WorkerOptions:
    """How a tenant worker runs: the tenants it may work, as the command line
    names them ("all" or ids), and its pace."""

    selection: str = "all"
    tuning: WorkerTuning = field(default_factory=WorkerTuning)


class TenantWorkers:
    """One worker process's share of the tenants, for projections or the relay.
    `stop()` may be called from a signal handler or another thread."""

    def __init__(
        self,
        directory_option: str | None,
        kind: str,
        make_job: Callable[[Tenant], TenantJob],
        options: WorkerOptions,
        on_notice: Callable[[WorkerNotice], None],
        check: Callable[[], None] | None = None,
    ) -> None:
        # Run before the first round (the relay: Kafka reachable, the topic made).
        self._check = check
        settings = WorkerSettings(kind, parse_selection(options.selection), options.tuning)
        self._worker = TenantWorker(directory(directory_option), make_job, settings, on_notice)

    @classmethod
    def projections(
        cls,
        directory_option: str | None,
        names: Sequence[str],
        options: WorkerOptions,
        on_notice: Callable[[WorkerNotice], None],
        *,
        batch_size: int,
    ) -> TenantWorkers:
        """Projection workers: every tenant's read models `names` (none: all) kept current."""
        with service_errors():
            chosen = registry.select(names)

        def make(tenant: Tenant) -> TenantJob:
            return _ProjectionJob(
                CatchUpPass(tenant.url, chosen, batch_size=batch_size, prepare=prepare_store)
            )

        return cls(directory_option, "projections", make, options, on_notice)

    @classmethod
    def relays(
        cls,
        directory_option: str | None,
        kafka: KafkaSettings,
        relay_options: RelayOptions,
        options: WorkerOptions,
        on_notice: Callable[[WorkerNotice], None],
    ) -> TenantWorkers:
        """Relay workers: every tenant's events published to one topic, keyed
        `TENANT/CUSTOMER_ID` with a `tenant` header."""
        from relay import Relay
        from services.operations import relay_config

        config = relay_config(relay_options)
        config.standby = False
        config.connect_at_start = False

        def make(tenant: Tenant) -> TenantJob:
            return _RelayJob(Relay(tenant.url, kafka, replace(config, tenant=tenant.tenant)))

        def check() -> None:
            from consumers.kafka_connect import connect_or_fail
            from consumers.kafka_topics import ensure_topic

            def make() -> bool:
                ensure_topic(kafka, config.topic, config.partitions, config.replication_factor)
                return True

            connect_or_fail(kafka, make)

        return cls(directory_option, "relay", make, options, on_notice, check)

    def stop(self) -> None:
        """Stop after the batches in hand."""
        self._worker.stop()

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called."""
        return self._worker.stopping

    def owned(self) -> list[str]:
        """The tenants this worker owns now."""
        return self._worker.owned()

    def run(self) -> None:
        """Work until stopped. The directory (or, for the relay, Kafka) unreachable
        at the start is an UNAVAILABLE error; later outages are retried."""
        if self._check is not None:
            self._check()
        with service_errors():
            self._worker.run()


def _close_keyring(url: DatabaseURL) -> None:
    """A tenant's keyring (its key store connection and cached keys) goes with its
    job: an idle tenant holds no connection."""
    from ledger.keystore.keyring import Keyring

    Keyring.close_for(url)


class _ProjectionJob:
    def __init__(self, catch_up: CatchUpPass) -> None:
        self._pass = catch_up

    def run_pass(self) -> PassResult:
        applied, position, lines = self._pass.run()
        return PassResult(applied, position, lines)

    def stop(self) -> None:
        self._pass.stop()

    def finish(self) -> None:
        self._pass.finish()

    def close(self) -> None:
        self._pass.close()
        _close_keyring(self._pass.url)


class _RelayJob:
    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self._published = 0

    def run_pass(self) -> PassResult:
        from relay import RelayFatal

        try:
            result = self._relay.run_pass()
        except RelayFatal as exc:
            raise ServiceError(Category.REJECTED, str(exc)) from None
        applied, self._published = result.published - self._published, result.published
        retry = LOCK_RETRY_S if self._relay.state == "waiting_for_lock" else None
        return PassResult(applied, result.position, retry_in=retry)

    def stop(self) -> None:
        self._relay.stop()

    def finish(self) -> None:
        self._relay.finish()

    def close(self) -> None:
        self._relay.close()
        _close_keyring(self._relay.url)
