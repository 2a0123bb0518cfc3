"""`ledger append`: store producer events from NDJSON or a JSON array."""

from __future__ import annotations

import io
import os
from typing import IO, TYPE_CHECKING, Any, cast

import click

from cli.context import (
    EXIT_REJECTED,
    EXIT_USAGE,
    FORMAT_OPTION,
    CliContext,
    CliError,
    cli_context,
    emit_json,
    progress_enabled,
)
from cli.options import batch_size_option
from ledger.input import read_items
from ledger.printable import printable
from services.appending import append_items, default_batch_size, report_json

if TYPE_CHECKING:
    from services.appending import AppendReport


class _CountingReader:
    """Counts characters read, so a progress bar can follow a streamed file."""

    def __init__(self, inner: IO[str], on_read: Any) -> None:
        self._inner = inner
        self._on_read = on_read

    def read(self, size: int | None = -1) -> str:
        data = self._inner.read(size if size is not None else -1)
        self._on_read(len(data))
        return data

    def readline(self, size: int | None = -1) -> str:
        data = self._inner.readline(size if size is not None else -1)
        self._on_read(len(data))
        return data

    def __iter__(self) -> _CountingReader:
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


@click.command()
@click.argument("path", default="-", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Store the valid events even when some are rejected (default: all or nothing).",
)
@batch_size_option(default_batch_size(), "Events per insert.")
@FORMAT_OPTION
def append(path: str, skip_invalid: bool, batch_size: int, output_format: str) -> None:
    """Append events from PATH (NDJSON or a JSON array; '-' for stdin).

    Every event is checked against its contract and the rules, in order. By
    default nothing is stored if any event is rejected. Each rejection is one
    line: `line N (event_id X, type T): field: reason`. Exit code 1 when
    anything was rejected.
    """
    ctx = cli_context()
    ctx.app()  # the store first: its errors come before the input's
    try:
        stream = click.open_file(path, "r", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from exc
    total = _size(stream)
    with stream:
        if progress_enabled() and total:
            with click.progressbar(length=total, label="appending", file=None) as bar:
                reader = cast(IO[str], _CountingReader(stream, bar.update))
                report = _run(ctx, reader, skip_invalid, batch_size)
        else:
            report = _run(ctx, stream, skip_invalid, batch_size)
    _print_report(report, output_format, skip_invalid)
    if report.rejected:
        raise click.exceptions.Exit(EXIT_REJECTED)


def _run(ctx: CliContext, stream: IO[str], skip_invalid: bool, batch_size: int) -> AppendReport:
    app, policy = ctx.app(), ctx.policy()
    return append_items(
        app, policy, read_items(stream), skip_invalid=skip_invalid, batch_size=batch_size
    )


def _size(stream: IO[str]) -> int:
    try:
        return os.fstat(stream.fileno()).st_size
    except (OSError, io.UnsupportedOperation, AttributeError):
        return 0


def _print_report(report: AppendReport, output_format: str, skip_invalid: bool) -> None:
    if output_format == "json":
        emit_json(report_json(report))
        return
    for rejection in report.rejected:
        click.echo(printable(str(rejection)), err=True)
    summary = (
        f"appended {report.appended}, duplicates {report.duplicates}, "
        f"rejected {len(report.rejected)}"
    )
    if report.rejected and not skip_invalid:
        summary += " (nothing stored; use --skip-invalid to store the valid events)"
    click.echo(summary)
