"""What every command shares: the configured store, output format, and errors.

Exit codes: 0 success; 1 the input was rejected or a check failed; 2 bad usage
or configuration; 3 a database or broker could not be reached.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from ledger.application import LedgerApplication
from ledger.config import RIGHTS_POLICY_ENV, ConfigError, DatabaseURL, database_url
from ledger.db import Connection
from ledger.printable import printable
from ledger.rights import RightsPolicy, load_policy

EXIT_OK = 0
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


class CliError(click.ClickException):
    """One clear line for the user, with a meaningful exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {printable(self.format_message())}", err=True)


@dataclass
class CliContext:
    db_option: str | None = None
    rights_option: str | None = None
    debug: bool = False
    _app: LedgerApplication | None = field(default=None, repr=False)

    @property
    def url(self) -> DatabaseURL:
        try:
            return database_url(self.db_option)
        except ConfigError as exc:
            raise CliError(str(exc)) from exc

    def app(self) -> LedgerApplication:
        if self._app is None:
            self._app = LedgerApplication(self.url)
        return self._app

    def connect(self) -> Connection:
        return Connection(self.url)

    def policy(self) -> RightsPolicy:
        path = self.rights_option or os.environ.get(RIGHTS_POLICY_ENV) or None
        try:
            return load_policy(path)
        except ConfigError as exc:
            raise CliError(str(exc)) from exc

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


def cli_context() -> CliContext:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliContext)
    assert obj is not None
    return obj


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, ensure_ascii=False))


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal: logs and pipes stay clean."""
    return sys.stderr.isatty()
