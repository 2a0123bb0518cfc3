"""Placeholder: `ledger audit` is being built (see its issue)."""

from __future__ import annotations

import click


@click.group(name="audit")
def audit() -> None:
    """Not built yet."""
