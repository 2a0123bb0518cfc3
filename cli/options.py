"""Options that several commands share, defined once so their names, ranges and
help read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

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
    default=30.0,
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
