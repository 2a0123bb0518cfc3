"""`ledger db`: schema management."""

from __future__ import annotations

import click

from cli.context import FORMAT_OPTION, cli_context, emit_json
from services.audit import grant_auditor as grant
from services.bootstrap import migrate as migrate_store


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
    migrate_store(url)
    if output_format == "json":
        emit_json({"migrated": True, "database": url.display()})
    else:
        click.echo(f"schema up to date in {url.display()}")


@db.command(name="grant-auditor")
@click.argument("role")
@FORMAT_OPTION
def grant_auditor(role: str, output_format: str) -> None:
    """Give ROLE read-only access to the events and the audit views (PostgreSQL).

    ROLE must exist (CREATE ROLE ... LOGIN PASSWORD ...) and must not be able to
    write the ledger through another role. Run as the ledger's owner. The
    auditor then runs `ledger --db postgresql://ROLE:PASSWORD@HOST/DB?schema=S
    audit verify` or queries the views with psql.
    """
    ctx = cli_context()
    with ctx.connect() as conn:
        report = grant(conn, role)
    if output_format == "json":
        emit_json(
            {
                "role": report.role,
                "database": report.database,
                "schema": report.schema,
                "select_on": list(report.readable),
            }
        )
    else:
        click.echo(
            f"role {report.role} can read {', '.join(report.readable)} in schema "
            f"{report.schema} of database {report.database}, and write nothing"
        )
