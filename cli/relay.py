"""Placeholder: `ledger relay` is being built (see its issue)."""

from __future__ import annotations

import click


@click.group(name="relay")
def relay() -> None:
    """Not built yet."""
