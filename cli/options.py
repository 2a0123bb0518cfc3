"""Options that several commands share, defined once so their names, ranges and
help read the same everywhere."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from ledger.backoff import MAX_BACKOFF_S

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def batch_size_option(default: int, help: str) -> Decorator:
    """`--batch-size`: how many events a command handles per step (its help says
    what a step is for that command)."""
    return click.option(
        "--batch-size",
        type=click.IntRange(1, 100_000),
        default=default,
        show_default=True,
        help=help,
    )


def interval_option(default: float | None, help: str) -> Decorator:
    """`--interval`: seconds between polls of a follower (`--follow`)."""
    return click.option(
        "--interval",
        type=click.FloatRange(0.01, 300),
        default=default,
        show_default=default is not None,
        metavar="SECONDS",
        help=help,
    )


MAX_BACKOFF_OPTION = click.option(
    "--max-backoff",
    type=click.FloatRange(0.1, 3600),
    default=MAX_BACKOFF_S,
    show_default=True,
    metavar="SECONDS",
    help="Longest wait between reconnection attempts.",
)


# The user a command acts as: the event's actor, checked by the rights policy.
ACTING_USER_OPTION = click.option(
    "--as", "user", required=True, metavar="USER", help="The acting user."
)

IDEMPOTENCY_KEY_OPTION = click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Repeating a command with the same key stores what it does once.",
)


@dataclass(frozen=True)
class TenantWorkerArgs:
    """What `tenant_worker_options` read, handed to the command as one argument,
    `worker_args` (`cli.workers.worker_options` makes the worker's options of it)."""

    tenants: str | None  # None: not a tenant worker
    claim_interval: float
    threads: int
    idle_close: float
    open_tenants: int


def tenant_worker_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--tenants`, `--claim-interval`, `--threads`, `--idle-close`, `--open-tenants`: a worker that
    serves the tenants of the directory (--tenants-db), shared with its peers. The
    command takes them as one argument, `worker_args: TenantWorkerArgs`."""
    # Here, not at the top: only the commands that run tenant workers load them.
    from services.workers import WorkerTuning

    defaults = WorkerTuning()

    @functools.wraps(command)
    def gathered(
        *args: Any,
        tenants: str | None,
        claim_interval: float,
        threads: int,
        idle_close: float,
        open_tenants: int,
        **kwargs: Any,
    ) -> Any:
        gathered_args = TenantWorkerArgs(tenants, claim_interval, threads, idle_close, open_tenants)
        return command(*args, worker_args=gathered_args, **kwargs)

    for option in reversed(
        [
            click.option(
                "--tenants",
                "tenants",
                metavar="all|ID,ID...",
                default=None,
                help="--follow: work the tenants of the tenant directory (--tenants-db), "
                "all or those listed, shared out among every worker running this command "
                "on the directory (PostgreSQL advisory locks on the directory's database; "
                "with a SQLite directory one worker takes every tenant: run one).",
            ),
            click.option(
                "--claim-interval",
                type=click.FloatRange(0.2, 300),
                default=defaults.claim_interval,
                show_default=True,
                metavar="SECONDS",
                help="--tenants: how often the worker counts its peers, claims unowned "
                "tenants and lets go of more than its share. A dead worker's tenants are "
                "taken over within 2 x this.",
            ),
            click.option(
                "--threads",
                type=click.IntRange(1, 64),
                default=defaults.threads,
                show_default=True,
                help="--tenants: how many tenants are worked at once.",
            ),
            click.option(
                "--idle-close",
                type=click.FloatRange(1, 3600),
                default=defaults.idle_close_s,
                show_default=True,
                metavar="SECONDS",
                help="--tenants: close a tenant's connections (and producer) after this "
                "long without new events.",
            ),
            click.option(
                "--open-tenants",
                type=click.IntRange(1, 10_000),
                default=defaults.open_jobs,
                show_default=True,
                help="--tenants: keep at most about this many tenants' connections (and "
                "producers) open between their passes; the least recently worked are "
                "closed first. Bounds the worker's connections to each server.",
            ),
        ]
    ):
        gathered = option(gathered)
    return gathered
