"""Placeholder: `ledger projections` is being built (see its issue)."""

from __future__ import annotations

import click


@click.group(name="projections")
def projections() -> None:
    """Not built yet."""
