"""What the read-model commands share: choosing projections, and messages on stderr."""

from __future__ import annotations

from collections.abc import Sequence

import click

from cli.context import EXIT_USAGE, CliError
from services.operations import PROJECTION_NAMES, projection_names


def choose(names: Sequence[str], all_: bool, *, required: bool) -> list[str]:
    """The names of the projections a command acts on: the NAMEs given, or --all."""
    if names and all_:
        raise CliError("give projection names or --all, not both", EXIT_USAGE)
    if required and not names and not all_:
        raise CliError(
            f"name a projection ({', '.join(PROJECTION_NAMES)}) or pass --all", EXIT_USAGE
        )
    return projection_names(names)


def echo_err(message: str) -> None:
    """One line on stderr (stdout is for results)."""
    click.echo(message, err=True)
