"""Placeholder: `ledger tab` is being built (see its issue)."""

from __future__ import annotations

import click


@click.command(name="tab")
def tab() -> None:
    """Not built yet."""
