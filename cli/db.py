"""`ledger db`: schema management."""

from __future__ import annotations

import click

from cli.context import FORMAT_OPTION, cli_context, emit_json
from consumers.relay import ensure_schema as ensure_relay_schema
from ledger.application import LedgerApplication
from projections.schema import ensure_schema as ensure_projection_schema


@click.group()
def db() -> None:
    """Database schema management."""


@db.command()
@FORMAT_OPTION
def migrate(output_format: str) -> None:
    """Create every table the ledger needs (events, read models, relay tracking).

    Safe to run repeatedly and from several processes at once. Deployments run
    it once before starting workers with LEDGER_AUTO_MIGRATE=0.
    """
    ctx = cli_context()
    url = ctx.url
    LedgerApplication(url, create_tables=True).close()
    with ctx.connect() as conn:
        ensure_projection_schema(conn)
        ensure_relay_schema(conn)
    if output_format == "json":
        emit_json({"migrated": True, "database": url.display()})
    else:
        click.echo(f"schema up to date in {url.display()}")
