"""`ledger relay`: publish every stored event to Kafka, and show how far it got."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from cli.context import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    FORMAT_OPTION,
    CliError,
    cli_context,
    emit_json,
    metrics_options,
    progress_enabled,
    start_metrics,
)
from cli.options import (
    MAX_BACKOFF_OPTION,
    TenantWorkerArgs,
    batch_size_option,
    tenant_worker_options,
)
from cli.workers import NoticePrinter, check_tenant_mode, run_workers, worker_options
from consumers.kafka_config import DEFAULT_TOPIC, TOPIC_ENV
from consumers.kafka_connect import KafkaUnavailable
from consumers.kafka_options import kafka_options, pop_kafka_options
from ledger.signals import stop_on_signals
from services.operations import (
    RelayOptions,
    RelayRun,
    relay_defaults,
    relay_position,
    reset_relay,
)
from services.workers import TenantWorkers

if TYPE_CHECKING:
    from services.operations import RelayProgress

DEFAULTS = relay_defaults()

TOPIC_OPTION = click.option(
    "--topic",
    envvar=TOPIC_ENV,
    default=DEFAULT_TOPIC,
    show_default=True,
    help=f"Kafka topic [env {TOPIC_ENV}].",
)
NAME_OPTION = click.option(
    "--name",
    metavar="NAME",
    help="Tracking name, for several relays of one ledger [default: the topic].",
)


@click.group(name="relay")
def relay() -> None:
    """Publish stored events to Kafka (the outbox relay)."""


@relay.command()
@click.option("--follow", is_flag=True, help="Keep publishing new events until stopped.")
@TOPIC_OPTION
@NAME_OPTION
@batch_size_option(
    DEFAULTS.batch_size, "Events per acknowledged batch (the tracked position moves per batch)."
)
@click.option(
    "--partitions",
    type=click.IntRange(1, 10_000),
    default=DEFAULTS.partitions,
    show_default=True,
    help="Partitions when the relay creates the topic (an existing topic is left alone).",
)
@click.option(
    "--replication-factor",
    type=int,
    default=-1,
    show_default=True,
    help="Replication factor when the relay creates the topic; -1 is the cluster's default.",
)
@click.option(
    "--compression",
    type=click.Choice(["lz4", "gzip", "snappy", "zstd", "none"]),
    default=DEFAULTS.compression,
    show_default=True,
    help="Compress message batches (librdkafka has every codec built in).",
)
@click.option(
    "--delivery-timeout",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a batch may wait for the broker's acknowledgement before the relay "
    "reconnects and sends it again.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=None,
    metavar="SECONDS",
    help="--follow: how often to look for new events [default: 0.02 on SQLite; "
    "on PostgreSQL new events wake the relay at once and it checks every 1 s anyway].",
)
@MAX_BACKOFF_OPTION
@tenant_worker_options
@kafka_options
@metrics_options
@FORMAT_OPTION
def run(
    follow: bool,
    topic: str,
    name: str | None,
    batch_size: int,
    partitions: int,
    replication_factor: int,
    compression: str | None,
    delivery_timeout: float,
    poll_interval: float | None,
    max_backoff: float,
    worker_args: TenantWorkerArgs,
    metrics_port: int | None,
    metrics_host: str,
    output_format: str,
    **kafka: Any,
) -> None:
    """Publish every stored event after the tracked position, in position order.

    Each event goes to the topic keyed by its customer_id, as the stored envelope
    in JSON plus `position`, `stream_id` and `stream_version`, with headers
    `event_id`, `type`, `schema_version` and `position`. The position is recorded
    only once the broker acknowledged everything up to it (at-least-once: after a
    crash or a broker outage some events are sent again, none is skipped).

    With --tenants, one process relays many tenants of the tenant directory to
    the one topic, sharing the tenants out with every other `relay run --follow
    --tenants` on the same directory (docs/scaling.md, "Workers"); a tenant's
    messages are keyed TENANT/CUSTOMER_ID and carry a `tenant` header. A tenant's
    relay never runs twice: its store's relay lock is taken as well.

    Exit codes: 0 done (or stopped by SIGTERM/SIGINT), 1 Kafka refused an event
    for good, 2 bad options, 3 the database or Kafka cannot be reached at start-up
    (with --tenants: the directory or Kafka; an event Kafka refuses for good then
    stops only its tenant, retried with back-off). While running, Kafka and
    database outages are retried with back-off.
    """
    ctx = cli_context()
    settings = pop_kafka_options(kafka)
    options = RelayOptions(
        topic=topic,
        name=name,
        batch_size=batch_size,
        partitions=partitions,
        replication_factor=replication_factor,
        compression=compression,
        delivery_timeout_s=delivery_timeout,
        max_backoff_s=max_backoff,
        poll_interval_s=poll_interval,
    )
    if worker_args.tenants is not None:
        check_tenant_mode(ctx, follow, metrics_port, metrics_host)
        workers = TenantWorkers.relays(
            ctx.tenants_option,
            settings,
            options,
            worker_options(
                worker_args, poll_interval if poll_interval is not None else 1.0, max_backoff
            ),
            NoticePrinter("relay", output_format),
        )
        with _logging_to_stderr():
            try:
                run_workers(workers)
            except KafkaUnavailable as exc:
                if workers.stopping:
                    return
                raise CliError(
                    f"{exc}; check --bootstrap and the SASL/SSL options", EXIT_UNAVAILABLE
                ) from None
        return
    start_metrics(ctx.url, metrics_port, metrics_host, follow)
    reporter = _Reporter(output_format, follow)
    relay_ = RelayRun(ctx.url, settings, options, on_progress=reporter.progress)
    with _logging_to_stderr(), stop_on_signals(relay_.stop):
        try:
            result = relay_.run(follow=follow)
        except KafkaUnavailable as exc:
            if relay_.stopping:  # stopped while still connecting: nothing to report
                return
            raise CliError(
                f"{exc}; check --bootstrap and the SASL/SSL options", EXIT_UNAVAILABLE
            ) from None
        finally:
            reporter.close()
    if output_format == "json":
        emit_json(
            {
                "state": "stopped" if relay_.stopping else "done",
                "topic": relay_.topic,
                "name": relay_.tracking_name,
                "published": result.published,
                "position": result.position,
                "head": result.head,
                "elapsed_s": round(result.elapsed_s, 3),
            }
        )
    else:
        how = "stopped" if relay_.stopping else "done"
        click.echo(
            f"{how}: published {result.published:,} events to {relay_.topic}; "
            f"position {result.position:,} (head {result.head:,})"
        )


@relay.command()
@TOPIC_OPTION
@NAME_OPTION
@FORMAT_OPTION
def status(topic: str, name: str | None, output_format: str) -> None:
    """Show the relay's tracked position, the ledger's head and the lag between them.

    Lag is the number of stored events not yet acknowledged by Kafka. Reads the
    database only; Kafka is not contacted."""
    ctx = cli_context()
    tracking_name = name or topic
    st = relay_position(ctx, tracking_name)
    if output_format == "json":
        emit_json({"topic": topic, **st.as_dict()})
        return
    updated = st.updated_at.isoformat() if st.updated_at else "never"
    click.echo(
        f"relay {tracking_name}: position {st.position:,}, head {st.head:,}, "
        f"lag {st.lag:,} events (last recorded {updated})"
    )


@relay.command()
@TOPIC_OPTION
@NAME_OPTION
@click.option(
    "--to",
    "position",
    type=click.IntRange(min=0),
    required=True,
    help="The position to restart after; 0 publishes everything again.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@FORMAT_OPTION
def reset(topic: str, name: str | None, position: int, yes: bool, output_format: str) -> None:
    """Move the tracked position, e.g. to republish everything to a topic that was lost.

    Stop the relay first: a running relay keeps its own position in memory (on
    PostgreSQL a running relay is detected and the reset refused)."""
    ctx = cli_context()
    tracking_name = name or topic
    if not yes and not click.confirm(
        f"Set relay {tracking_name!r} to position {position}? Events after it are sent again.",
        err=True,
    ):
        raise CliError("not changed", EXIT_USAGE)
    with ctx.connect() as conn:
        st = reset_relay(conn, tracking_name, position)
    if output_format == "json":
        emit_json({"topic": topic, **st.as_dict()})
    else:
        click.echo(f"relay {tracking_name}: position {st.position:,}, lag {st.lag:,} events")


class _Reporter:
    """Progress on a terminal during catch-up; JSON status lines with --format json."""

    def __init__(self, output_format: str, follow: bool) -> None:
        self.json = output_format == "json"
        self.follow = follow
        self.tty = progress_enabled() and not self.json
        self._last_emit = 0.0
        self._start: tuple[float, int] | None = None
        self._line_open = False
        self._last_state = ""

    def progress(self, p: RelayProgress) -> None:
        now = time.monotonic()
        changed = p.state != self._last_state
        self._last_state = p.state
        if self.json:
            # Every state change, and at most once a second while publishing.
            if changed or now - self._last_emit >= 1.0:
                self._last_emit = now
                emit_json(p.as_dict())
            return
        if not self.tty:
            return
        if p.state != "publishing":
            self._end_line()
            return
        if self._start is None:
            self._start = (now, p.published)
        if now - self._last_emit < 0.1 and p.lag:
            return
        self._last_emit = now
        elapsed = max(now - self._start[0], 1e-6)
        rate = (p.published - self._start[1]) / elapsed
        done = p.position / p.head if p.head else 1.0
        sys.stderr.write(
            f"\rrelaying: position {p.position:,} of {p.head:,} ({done:.0%}), "
            f"lag {p.lag:,}, {rate:,.0f} events/s   "
        )
        sys.stderr.flush()
        self._line_open = True

    def _end_line(self) -> None:
        if self._line_open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._line_open = False
            self._start = None

    def close(self) -> None:
        self._end_line()


@contextmanager
def _logging_to_stderr() -> Iterator[None]:
    """The relay's state changes, one line each, on stderr (stdout is for results)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    loggers = [logging.getLogger("ledger.relay"), logging.getLogger("ledger.kafka")]
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


__all__ = ["relay"]
