"""What every command shares: the configured store, output format, and errors.

Exit codes: 0 success; 1 the input was rejected or a check failed; 2 bad usage
or configuration; 3 a database or broker could not be reached.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click

from ledger.config import DatabaseURL
from ledger.printable import printable
from services.bootstrap import Services
from services.errors import Category

EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

FORMAT_OPTION = click.option(
    "--format",
    "output_format",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    help="Human-readable output, or JSON for scripts.",
)


def metrics_options(command: Any) -> Any:
    """`--metrics-port` / `--metrics-host` for the long-running workers."""
    command = click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        help="--follow: address the metrics endpoint listens on (0.0.0.0 in a container).",
    )(command)
    return click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        default=None,
        metavar="PORT",
        help="--follow: serve Prometheus metrics on http://HOST:PORT/metrics "
        "(the head, every projection's and relay's lag).",
    )(command)


def start_metrics(
    url: DatabaseURL | None,
    port: int | None,
    host: str,
    follow: bool,
    *,
    tenants_option: str | None = None,
) -> None:
    """With `--metrics-port`, serve the store's metrics (`url`), or every tenant's of
    the directory (`url` None: a worker of many tenants), from a daemon thread; it
    needs `--follow`, and a port that cannot be bound is a usage error."""
    if port is None:
        return
    if not follow:
        raise CliError("--metrics-port needs --follow", EXIT_USAGE)
    from services import metrics  # prometheus-client only for processes that serve metrics

    if url is None:
        from services.tenants import directory

        metrics.watch_tenants(directory(tenants_option))
    else:
        metrics.watch_store(url)
    try:
        metrics.serve_metrics(port, host)
    except OSError as exc:
        raise CliError(f"--metrics-port {port}: {exc.strerror}", EXIT_USAGE) from exc


class CliError(click.ClickException):
    """One clear line for the user, with a meaningful exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {printable(self.format_message())}", err=True)


@dataclass
class CliContext(Services):
    """The service layer's composition root, plus what only a terminal needs."""

    debug: bool = False


# Each service error category's exit code: the one place the CLI decides them.
EXIT_CODES: dict[Category, int] = {
    Category.REJECTED: EXIT_REJECTED,
    Category.NOT_FOUND: EXIT_REJECTED,
    Category.FORBIDDEN: EXIT_REJECTED,
    Category.CONFLICT: EXIT_REJECTED,
    Category.UNAVAILABLE: EXIT_UNAVAILABLE,
    Category.USAGE: EXIT_USAGE,
}


def cli_context() -> CliContext:
    """The running command's CliContext, which the `ledger` group sets up."""
    ctx = click.get_current_context()
    obj = ctx.find_object(CliContext)
    assert obj is not None
    return obj


def emit_json(value: Any) -> None:
    """`--format json` output: one JSON document on one line, non-ASCII kept as is
    and anything JSON lacks (times, UUIDs) as its `str`."""
    click.echo(json.dumps(value, default=str, ensure_ascii=False))


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal: logs and pipes stay clean."""
    return sys.stderr.isatty()
