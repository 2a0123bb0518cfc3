"""What `projections run --tenants` and `relay run --tenants` share: the checks of
their options and the worker's progress output."""

from __future__ import annotations

import sys

import click

from cli.context import EXIT_USAGE, CliContext, CliError, emit_json, start_metrics
from cli.options import TenantWorkerArgs
from ledger.printable import printable
from ledger.signals import stop_on_signals
from services.workers import TenantWorkers, WorkerNotice, WorkerOptions, WorkerTuning


def check_tenant_mode(
    ctx: CliContext, follow: bool, metrics_port: int | None, metrics_host: str
) -> None:
    """`--tenants` is for a following worker of the directory, not one store; its
    `--metrics-port` serves every tenant's metrics (per server and the top ones)."""
    if not follow:
        raise CliError("--tenants needs --follow", EXIT_USAGE)
    if ctx.db_option or ctx.tenant:
        raise CliError(
            "--tenants works the tenant directory's stores: give no --db or --tenant",
            EXIT_USAGE,
        )
    start_metrics(None, metrics_port, metrics_host, follow, tenants_option=ctx.tenants_option)


def worker_options(
    workers: TenantWorkerArgs, poll_interval: float, max_backoff: float
) -> WorkerOptions:
    """The worker's options from the command line."""
    assert workers.tenants is not None
    tuning = WorkerTuning(
        claim_interval=workers.claim_interval,
        poll_interval=poll_interval,
        threads=workers.threads,
        idle_close_s=workers.idle_close,
        max_backoff=max_backoff,
        open_jobs=workers.open_tenants,
    )
    return WorkerOptions(selection=workers.tenants, tuning=tuning)


class NoticePrinter:
    """Each notice as one line on stderr (`LABEL: ...`), or as a JSON line on
    stdout with --format json."""

    def __init__(self, label: str, output_format: str) -> None:
        self.label = label
        self.json = output_format == "json"

    def __call__(self, notice: WorkerNotice) -> None:
        if self.json:
            emit_json(notice.as_dict())
            sys.stdout.flush()
        else:
            click.echo(f"{self.label}: {printable(notice.describe())}", err=True)


def run_workers(workers: TenantWorkers) -> None:
    """Run until SIGTERM or Ctrl-C, which stop every tenant after its batch in hand."""
    with stop_on_signals(workers.stop):
        workers.run()
