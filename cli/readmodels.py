"""What the read-model commands (`projections`, `demo`) share: choosing projections."""

from __future__ import annotations

from collections.abc import Sequence

import click

from cli.context import EXIT_USAGE, CliError
from projections import registry
from projections.base import Projection
from services.errors import service_errors


def choose(names: Sequence[str], all_: bool, *, required: bool) -> list[Projection]:
    """The projections a command acts on: the NAMEs given, or --all."""
    if names and all_:
        raise CliError("give projection names or --all, not both", EXIT_USAGE)
    if required and not names and not all_:
        raise CliError(f"name a projection ({', '.join(registry.NAMES)}) or pass --all", EXIT_USAGE)
    with service_errors():
        return registry.select(names)


def echo_err(message: str) -> None:
    click.echo(message, err=True)
