"""Prometheus metrics, one registry per process (prometheus-client's default).

Counters and histograms are updated where the work happens (the service
layer's append, the API's request middleware). Head position and lags are not
counted by anyone: they are read from the tracking tables when scraped
(`LagCollector`), so the API, the projection follower and the relay all report
every projection's and relay's lag, whichever of them is running.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ledger.appending.report import AppendReport
from ledger.config import DatabaseURL
from ledger.db import Connection
from ledger.printable import first_line
from ledger.stores.layout import EVENTS_TABLE
from ledger.tenants import Tenant, TenantDirectory, heads_statement
from services.appending import APPEND_OBSERVERS

log = logging.getLogger("ledger.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

EVENTS_APPENDED = Counter("ledger_events_appended", "Events stored by appends.")
EVENT_DUPLICATES = Counter(
    "ledger_event_duplicates", "Appended events whose event_id was stored before."
)
EVENTS_REJECTED = Counter(
    "ledger_events_rejected",
    "Appended events rejected, by reason class (contract, rule, store or input).",
    ["reason"],
)
APPEND_SECONDS = Histogram(
    "ledger_append_batch_seconds",
    "Time to validate and store one append call (a request or a file).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HTTP_REQUESTS = Counter(
    "ledger_http_requests",
    "HTTP requests answered, by route and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "ledger_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


def _count_append(report: AppendReport | None, seconds: float) -> None:
    APPEND_SECONDS.observe(seconds)
    if report is None:  # the input as a whole could not be read
        EVENTS_REJECTED.labels("input").inc()
        return
    # All-or-nothing rolled back: nothing was appended, whatever was validated.
    EVENTS_APPENDED.inc(report.appended if report.stored else 0)
    EVENT_DUPLICATES.inc(report.duplicates)
    for rejection in report.rejected:
        EVENTS_REJECTED.labels(rejection.reason_class).inc()


APPEND_OBSERVERS.append(_count_append)


class LagCollector(Collector):
    """Head position and every projection's and relay's lag, read at scrape time."""

    def __init__(self, url: DatabaseURL) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def describe(self) -> Iterable[Metric]:
        # Without this the registry would call collect() (a database query) when
        # the collector is registered.
        return []

    def collect(self) -> Iterator[Metric]:
        head = GaugeMetricFamily("ledger_head_position", "Position of the newest stored event.")
        p_events = GaugeMetricFamily(
            "ledger_projection_lag_events", "Events stored but not yet applied.", labels=["name"]
        )
        p_seconds = GaugeMetricFamily(
            "ledger_projection_lag_seconds",
            "Age of the oldest event not yet applied.",
            labels=["name"],
        )
        r_events = GaugeMetricFamily(
            "ledger_relay_lag_events", "Events stored but not yet published.", labels=["name"]
        )
        r_seconds = GaugeMetricFamily(
            "ledger_relay_lag_seconds",
            "Age of the oldest event not yet published.",
            labels=["name"],
        )
        up = GaugeMetricFamily("ledger_store_up", "1 when the last scrape could read the store.")
        with self._lock:
            try:
                self._read(head, p_events, p_seconds, r_events, r_seconds)
                up.add_metric([], 1)
            except Exception as exc:  # a scrape must answer even when the store does not
                log.warning("metrics: cannot read the store: %s", str(exc).splitlines()[:1])
                self._drop()
                up.add_metric([], 0)
        yield from (up, head, p_events, p_seconds, r_events, r_seconds)

    def _read(
        self,
        head: GaugeMetricFamily,
        p_events: GaugeMetricFamily,
        p_seconds: GaugeMetricFamily,
        r_events: GaugeMetricFamily,
        r_seconds: GaugeMetricFamily,
    ) -> None:
        # Imported here: this module is imported by every process that serves
        # metrics, and the first scrape pays for these once.
        from ledger.reading import count_after, head_position, recorded_at_after
        from projections import registry
        from projections.clock import now
        from projections.status import projection_status
        from projections.tables import existing_tables
        from projections.tracking import TRACKING_TABLE as PROJECTION_TRACKING
        from relay.tracking import TRACKING_TABLE as RELAY_TRACKING
        from relay.tracking import load_tracking, tracked_relays

        if self._conn is not None and self._conn.broken:
            # Ended by a database restart: read through a new one, so the first
            # scrape after the database is back already reports it up.
            self._drop()
        if self._conn is None:
            self._conn = Connection(self._url)
        conn = self._conn
        tables = existing_tables(conn)
        if EVENTS_TABLE not in tables:
            return
        position = None
        if PROJECTION_TRACKING in tables:
            position, statuses = projection_status(conn, registry.select(()))
            for s in statuses:
                p_events.add_metric([s.name], s.lag_events)
                p_seconds.add_metric([s.name], s.lag_seconds)
        position = head_position(conn) if position is None else position
        head.add_metric([], position)
        if RELAY_TRACKING in tables:
            for name in tracked_relays(conn):
                tracked = load_tracking(conn, name).position
                behind = tracked < position
                oldest = recorded_at_after(conn, tracked) if behind else None
                r_events.add_metric([name], count_after(conn, tracked) if behind else 0)
                r_seconds.add_metric(
                    [name], max(0.0, now() - oldest.timestamp()) if oldest else 0.0
                )

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


# Per-tenant series are kept to the tenants with the highest values, so a
# deployment of thousands of tenants exposes a bounded number of series.
TOP_TENANTS = 10
# A scrape reads every tenant's store; scrapes closer together than this reuse
# the last reading.
TENANTS_READ_INTERVAL_S = 5.0


@dataclass(frozen=True)
class TenantReading:
    """One tenant's head, slowest projection's and relay's positions (None: none
    tracked yet) at one time."""

    tenant: str
    server: str
    head: int
    projected: int | None
    relayed: int | None
    at: float

    @property
    def projection_lag(self) -> int:
        # Positions are assigned max + 1 under the write lock: no holes, so the
        # difference counts events.
        return max(0, self.head - (self.projected or 0))

    @property
    def relay_lag(self) -> int:
        return 0 if self.relayed is None else max(0, self.head - self.relayed)


class TenantsCollector(Collector):
    """Every tenant's head and lags, read at scrape time with one statement per
    server, exposed as per-server sums and the top `top` tenants of each kind."""

    def __init__(self, tenants: Callable[[], list[Tenant]], top: int = TOP_TENANTS) -> None:
        # `tenants`: the directory's entries, read at scrape time.
        self._tenants = tenants
        self._top = top
        self._lock = threading.Lock()
        self._last: dict[str, TenantReading] = {}
        self._rates: dict[str, float] = {}
        self._servers_up: dict[str, bool] = {}
        self._read_at = 0.0

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= TENANTS_READ_INTERVAL_S:
                self._refresh()
            readings = list(self._last.values())
            rates = dict(self._rates)
            servers_up = dict(self._servers_up)
        yield from self._families(readings, rates, servers_up)

    def _refresh(self) -> None:
        try:
            tenants = self._tenants()
        except Exception as exc:
            log.warning("metrics: cannot read the tenant directory: %s", first_line(exc))
            return
        by_server: dict[str, list[Tenant]] = {}
        for entry in tenants:
            by_server.setdefault(entry.server, []).append(entry)
        fresh: dict[str, TenantReading] = {}
        for server, entries in by_server.items():
            try:
                for reading in read_tenants(entries):
                    fresh[reading.tenant] = reading
                self._servers_up[server] = True
            except Exception as exc:
                log.warning("metrics: cannot read %s: %s", server, first_line(exc))
                self._servers_up[server] = False
        for server in set(self._servers_up) - set(by_server):
            del self._servers_up[server]
        rates: dict[str, float] = {}
        for tenant, now in fresh.items():
            before = self._last.get(tenant)
            if before is not None and now.at > before.at:
                rates[tenant] = max(0.0, (now.head - before.head) / (now.at - before.at))
        self._last, self._rates = fresh, rates
        self._read_at = time.monotonic()

    def _families(
        self,
        readings: list[TenantReading],
        rates: dict[str, float],
        servers_up: dict[str, bool],
    ) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ledger_tenant_server_up",
            "1 when the last scrape could read every tenant's store on this server.",
            labels=["server"],
        )
        count = GaugeMetricFamily("ledger_tenants", "Tenants by server.", labels=["server"])
        events = GaugeMetricFamily(
            "ledger_server_events",
            "Events stored by the server's tenants (rate() of it: the server's append rate).",
            labels=["server"],
        )
        p_lag = GaugeMetricFamily(
            "ledger_server_projection_lag_events",
            "Events the server's tenants' slowest projections have not applied, summed.",
            labels=["server"],
        )
        r_lag = GaugeMetricFamily(
            "ledger_server_relay_lag_events",
            "Events the server's tenants' relays have not published, summed.",
            labels=["server"],
        )
        totals: dict[str, list[int]] = {s: [0, 0, 0, 0] for s in servers_up}
        for r in readings:
            t = totals.setdefault(r.server, [0, 0, 0, 0])
            t[0] += 1
            t[1] += r.head
            t[2] += r.projection_lag
            t[3] += r.relay_lag
        for server, (n, head, plag, rlag) in sorted(totals.items()):
            up.add_metric([server], 1 if servers_up.get(server) else 0)
            count.add_metric([server], n)
            events.add_metric([server], head)
            p_lag.add_metric([server], plag)
            r_lag.add_metric([server], rlag)
        yield from (up, count, events, p_lag, r_lag)
        yield self._top_family(
            "ledger_tenant_append_rate",
            f"Events/s appended between the last two readings: the {self._top} busiest tenants.",
            rates,
        )
        yield self._top_family(
            "ledger_tenant_projection_lag_events",
            f"Events a tenant's slowest projection has not applied: the {self._top} furthest "
            "behind.",
            {r.tenant: r.projection_lag for r in readings},
        )
        yield self._top_family(
            "ledger_tenant_relay_lag_events",
            f"Events a tenant's relay has not published: the {self._top} furthest behind.",
            {r.tenant: r.relay_lag for r in readings},
        )
        yield self._top_family(
            "ledger_tenant_head_position",
            f"Position of a tenant's newest event: the {self._top} largest tenants.",
            {r.tenant: r.head for r in readings},
        )

    def _top_family(
        self, name: str, documentation: str, values: dict[str, float] | dict[str, int]
    ) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, documentation, labels=["tenant"])
        ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        for tenant, value in [kv for kv in ranked if kv[1] > 0][: self._top]:
            family.add_metric([tenant], value)
        return family


def read_tenants(entries: list[Tenant]) -> list[TenantReading]:
    """The readings of tenants on one server: one statement for all of them on
    PostgreSQL (each a schema of the same database), one per store on SQLite."""
    from projections.tracking import TRACKING_TABLE as PROJECTION_TRACKING
    from relay.tracking import TRACKING_TABLE as RELAY_TRACKING

    trackers = (PROJECTION_TRACKING, RELAY_TRACKING)
    rows: list[tuple[object, ...]] = []
    if entries[0].url.kind == "postgresql":
        statement, params = heads_statement({e.tenant: e.url.schema for e in entries}, *trackers)
        with Connection(entries[0].url) as conn:
            rows = conn.fetchall(statement, params)
    else:
        for entry in entries:
            statement, params = heads_statement({entry.tenant: None}, *trackers)
            with Connection(entry.url) as conn:
                rows += conn.fetchall(statement, params)
    at = time.monotonic()
    server = {e.tenant: e.server for e in entries}
    return [
        TenantReading(
            str(tenant),
            server[str(tenant)],
            int(str(head or 0)),
            None if projected is None else int(str(projected)),
            None if relayed is None else int(str(relayed)),
            at,
        )
        for tenant, head, projected, relayed in rows
    ]


_lag_collector: LagCollector | None = None
_tenants_collector: TenantsCollector | None = None


def watch_tenants(found: TenantDirectory, top: int = TOP_TENANTS) -> None:
    """Report every tenant of the directory `found` (its head and lags, per server
    and the top `top` tenants) in this process's registry: a server or worker of
    many tenants."""
    from services.tenants import list_tenants

    global _tenants_collector
    if _tenants_collector is not None:
        REGISTRY.unregister(_tenants_collector)
    _tenants_collector = TenantsCollector(lambda: list_tenants(found), top)
    REGISTRY.register(_tenants_collector)


def watch_store(url: DatabaseURL) -> None:
    """Report `url`'s head and lags in this process's registry (one store per process)."""
    global _lag_collector
    if _lag_collector is not None:
        REGISTRY.unregister(_lag_collector)
        _lag_collector.close()
    _lag_collector = LagCollector(url)
    REGISTRY.register(_lag_collector)


def warm_up() -> None:
    """Import now what the first scrape would: a scrape that imports while a
    busy append holds the interpreter waits for it between every file it
    reads (seconds, against milliseconds for a scrape of a warm process)."""
    for module in _SCRAPE_IMPORTS:
        importlib.import_module(module)


# What `LagCollector._read` and the scrape's exposition import when first used.
_SCRAPE_IMPORTS = (
    "prometheus_client.exposition",
    "ledger.reading",
    "ledger.stores.layout",
    "projections.registry",
    "projections.clock",
    "projections.status",
    "projections.tables",
    "projections.tracking",
    "relay.tracking",
)


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads. Under `ledger serve --workers N` each worker is a
    process with its own counters: prometheus-client's multiprocess mode
    (PROMETHEUS_MULTIPROC_DIR, set by `api.serve`) adds them up across workers."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if _lag_collector is not None:
        registry.register(_lag_collector)
    if _tenants_collector is not None:
        registry.register(_tenants_collector)
    return registry


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose the registry on http://HOST:PORT/metrics from a daemon thread (the
    projection follower and the relay, which have no HTTP server of their own)."""
    start_http_server(port, addr=host)
