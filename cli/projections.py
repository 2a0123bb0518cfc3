"""`ledger projections`: run, inspect, rebuild and reset the per-tab read models."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from cli.context import (
    EXIT_REJECTED,
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
    interval_option,
    tenant_worker_options,
)
from cli.progress import Mode, ReplayProgress
from cli.readmodels import choose, echo_err
from cli.tables import Column, echo_table
from cli.workers import NoticePrinter, check_tenant_mode, run_workers, worker_options
from ledger.printable import printable
from ledger.signals import stop_on_signals
from services.bootstrap import prepare_store
from services.operations import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECKPOINT_EVENTS,
    DEFAULT_REBUILD_BATCH_SIZE,
    FollowNotice,
    catch_up_projections,
    discard_rebuild,
    follow_projections,
    projections_status,
    rebuild_projections,
    reset_projections,
)
from services.workers import TenantWorkers


@click.group(name="projections")
def projections() -> None:
    """Per-tab read models: keep them current, inspect, rebuild, reset."""


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and Ctrl-C finish the batch in hand, then stop cleanly."""
    stop = threading.Event()
    with stop_on_signals(stop.set):
        yield stop


@projections.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--all", "all_", is_flag=True, help="Every projection (the default).")
@click.option("--follow", is_flag=True, help="After catching up, keep applying new events.")
@batch_size_option(DEFAULT_BATCH_SIZE, "Events per transaction.")
@interval_option(1.0, "Seconds between polls (SQLite); fallback poll next to LISTEN (PostgreSQL).")
@MAX_BACKOFF_OPTION
@tenant_worker_options
@metrics_options
@FORMAT_OPTION
def run(
    names: tuple[str, ...],
    all_: bool,
    follow: bool,
    batch_size: int,
    interval: float,
    max_backoff: float,
    worker_args: TenantWorkerArgs,
    metrics_port: int | None,
    metrics_host: str,
    output_format: str,
) -> None:
    """Catch the read models up with the ledger; with --follow, keep them current.

    Each batch of events is applied in one transaction together with the
    projection's position, so a killed run resumes exactly where it stopped.
    Following uses LISTEN/NOTIFY on PostgreSQL (polling as a fallback) and
    polling on SQLite; when the database goes away it retries with back-off.

    With --tenants, one process keeps the read models of many tenants current,
    sharing the tenants out with every other `projections run --follow --tenants`
    on the same directory (docs/scaling.md, "Workers"). Exit codes: 0 stopped by
    SIGTERM/SIGINT, 2 bad options, 3 the directory cannot be reached at start-up.
    """
    chosen = choose(names, all_, required=False)
    ctx = cli_context()
    if worker_args.tenants is not None:
        check_tenant_mode(ctx, follow, metrics_port, metrics_host)
        run_workers(
            TenantWorkers.projections(
                ctx.tenants_option,
                chosen,
                worker_options(worker_args, interval, max_backoff),
                NoticePrinter("projections", output_format),
                batch_size=batch_size,
            )
        )
        return
    start_metrics(ctx.url, metrics_port, metrics_host, follow)
    if follow:

        def notify(notice: FollowNotice) -> None:
            if output_format == "json":
                emit_json(
                    {
                        "event": notice.kind,
                        "position": notice.position,
                        "error": notice.error,
                        "retry_in": notice.retry_in,
                        "applied": notice.applied,
                    }
                )
                sys.stdout.flush()
            else:
                echo_err(f"projections: {printable(notice.describe())}")

        with _stop_on_signals() as stop:
            follow_projections(
                ctx.url,
                chosen,
                stop=stop,
                on_notice=notify,
                batch_size=batch_size,
                interval=interval,
                max_backoff=max_backoff,
            )
        return
    with ctx.connect() as conn, _stop_on_signals() as stop:
        report = catch_up_projections(conn, chosen, batch_size=batch_size, stop=stop)
    if output_format == "json":
        emit_json(
            {
                "projections": report.projections,
                "applied": report.applied,
                "position": report.position,
                "head": report.head,
                "stopped": report.stopped,
            }
        )
    else:
        click.echo(
            f"{', '.join(report.projections)}: applied {report.applied:,} events; "
            f"at position {report.position:,} (head {report.head:,})"
        )
        for line in report.stopped:
            echo_err(printable(line))
    if report.stopped:
        raise click.exceptions.Exit(EXIT_REJECTED)


@projections.command()
@FORMAT_OPTION
def status(output_format: str) -> None:
    """Each projection's position, the head, the lag in events and seconds, and its state.

    States: following (a follower is running), up to date, behind, outdated
    (written by an older layout: rebuild it), stopped (at an event it cannot
    apply; the line below the table names it; the others go on). A rebuild in progress or left
    behind by a killed one is shown with its own position.
    """
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        answer = projections_status(conn)
    if output_format == "json":
        emit_json(answer)
        return
    click.echo(f"head: position {answer['head']:,}")
    table = answer["projections"]
    echo_table(
        [
            Column("PROJECTION", lambda r: r["name"]),
            Column("POSITION", lambda r: f"{r['position']:,}", right=True),
            Column("LAG (events)", lambda r: f"{r['lag_events']:,}", right=True),
            Column("LAG (s)", lambda r: f"{r['lag_seconds']:.1f}", right=True),
            Column("STATE", lambda r: r["state"]),
            Column("UPDATED", lambda r: r["updated_at"], width=25),
            Column("REBUILD", _rebuild_text, width=60),
        ],
        table,
    )
    for row in table:
        if row["stopped"] is not None:
            click.echo(printable(row["stopped"]))


def _rebuild_text(row: dict[str, object]) -> str:
    rebuild = row["rebuild"]
    if not isinstance(rebuild, dict):
        return "-"
    how = "running" if rebuild["active"] else "stopped: rerun to resume, or --discard"
    return f"{rebuild['phase']} at {rebuild['position']:,} ({how})"


def _progress_mode(output_format: str) -> Mode:
    if output_format == "json":
        return "json"
    return "bar" if progress_enabled() else "log"


@projections.command()
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "all_", is_flag=True, help="Every projection, in one pass over the events.")
@click.option(
    "--discard",
    is_flag=True,
    help="Drop what an unfinished rebuild left behind instead of resuming it.",
)
@batch_size_option(DEFAULT_REBUILD_BATCH_SIZE, "Events read at a time.")
@click.option(
    "--checkpoint-events",
    type=click.IntRange(1, 10_000_000),
    default=DEFAULT_CHECKPOINT_EVENTS,
    show_default=True,
    help="Events between checkpoints (a killed rebuild resumes from the last one); bounds memory.",
)
@FORMAT_OPTION
def rebuild(
    names: tuple[str, ...],
    all_: bool,
    discard: bool,
    batch_size: int,
    checkpoint_events: int,
    output_format: str,
) -> None:
    """Replay every event into fresh tables, then swap them in atomically.

    The live read model keeps answering (and a running follower keeps it
    current) until the swap. A rebuild that was killed is resumed where it
    stopped; --discard drops it instead. Either way the live read model is
    untouched until a rebuild completes.
    """
    chosen = choose(names, all_, required=True)
    ctx = cli_context()
    with ctx.connect() as conn:
        if discard:
            dropped = discard_rebuild(conn, chosen)
            if output_format == "json":
                emit_json({"discarded": dropped})
            else:
                click.echo(
                    f"discarded unfinished rebuild of {', '.join(dropped)}"
                    if dropped
                    else "no unfinished rebuild to discard"
                )
            return
        progress = ReplayProgress(_progress_mode(output_format), 0)
        report = rebuild_projections(
            conn,
            chosen,
            batch_size=batch_size,
            checkpoint_events=checkpoint_events,
            on_start=progress.begin,
            on_progress=progress.update,
            on_phase=progress.set_phase,
        )
        progress.finish()
    rate = report.events / report.seconds if report.seconds > 0 else 0.0
    if output_format == "json":
        emit_json(
            {
                "event": "done",
                "rebuilt": list(report.projections),
                "resumed": list(report.resumed),
                "events": report.events,
                "position": report.position,
                "seconds": round(report.seconds, 3),
                "events_per_s": round(rate, 1),
            }
        )
        return
    resumed = f" (resumed {', '.join(report.resumed)})" if report.resumed else ""
    click.echo(
        f"rebuilt {', '.join(report.projections)}{resumed}: {report.events:,} events in "
        f"{report.seconds:.1f} s ({rate:,.0f} events/s); live at position {report.position:,}"
    )


@projections.command()
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "all_", is_flag=True, help="Every projection.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@FORMAT_OPTION
def reset(names: tuple[str, ...], all_: bool, yes: bool, output_format: str) -> None:
    """Empty read models and set them back to position 0 (downtime).

    Their tabs answer from empty tables until `ledger projections run` (or the
    next `ledger tab`) has replayed the events. Prefer `rebuild`, which has no
    downtime.
    """
    chosen = choose(names, all_, required=True)
    if not yes:
        if not sys.stdin.isatty():
            raise CliError("reset empties read models: pass --yes to confirm", EXIT_USAGE)
        click.confirm(f"empty {', '.join(chosen)}?", abort=True)
    ctx = cli_context()
    with ctx.connect() as conn:
        done = reset_projections(conn, chosen)
    if output_format == "json":
        emit_json({"reset": done})
    else:
        click.echo(
            f"reset {', '.join(done)} to position 0; "
            "run `ledger projections run` to fill them again"
        )
