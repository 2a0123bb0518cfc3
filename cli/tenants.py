"""`ledger tenants`: the tenant directory of a hosted deployment (docs/scaling.md)."""

from __future__ import annotations

import click

from cli.context import EXIT_USAGE, FORMAT_OPTION, CliError, cli_context, emit_json
from cli.tables import Column, echo_table
from ledger.printable import printable
from services.tenants import (
    add_tenant,
    directory,
    list_tenants,
    move_tenant,
    remove_tenant,
    tenant_summary,
)


@click.group()
def tenants() -> None:
    """The tenant directory: which store holds each tenant (shop) of a hosted deployment."""


@tenants.command()
@click.argument("tenant")
@click.option(
    "--db",
    "db",
    required=True,
    metavar="URL",
    help="The tenant's store. A PostgreSQL URL without ?schema= gets the schema tenant_ID.",
)
@click.option(
    "--rights",
    metavar="PATH",
    help="The tenant's own rights policy file (default: the deployment's).",
)
@FORMAT_OPTION
def add(tenant: str, db: str, rights: str | None, output_format: str) -> None:
    """Add TENANT: create and migrate its store, then enter it in the directory."""
    ctx = cli_context()
    entry = add_tenant(directory(ctx.tenants_option), tenant, db, rights)
    if output_format == "json":
        emit_json(tenant_summary(entry))
    else:
        click.echo(f"tenant {entry.tenant} added; its store: {printable(entry.url.display())}")


@tenants.command(name="list")
@FORMAT_OPTION
def list_command(output_format: str) -> None:
    """The tenants and their stores (passwords masked)."""
    ctx = cli_context()
    items = [tenant_summary(t) for t in list_tenants(directory(ctx.tenants_option))]
    if output_format == "json":
        emit_json({"items": items})
        return
    if not items:
        click.echo("no tenants yet: add one with `ledger tenants add TENANT --db URL`")
        return
    echo_table(
        [
            Column("tenant", lambda r: r["tenant"]),
            Column("state", lambda r: r["state"], width=8),
            Column("store", lambda r: r["db"], width=80),
        ],
        items,
    )


@tenants.command()
@click.argument("tenant")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@FORMAT_OPTION
def remove(tenant: str, yes: bool, output_format: str) -> None:
    """Take TENANT out of the directory. Its store is kept, events and all: drop
    the schema or file yourself when you mean to."""
    if not yes and not click.confirm(f"Remove tenant {printable(tenant)} from the directory?"):
        raise CliError("nothing removed", EXIT_USAGE)
    ctx = cli_context()
    entry = remove_tenant(directory(ctx.tenants_option), tenant)
    if output_format == "json":
        emit_json({"removed": entry.tenant, "db": entry.url.display()})
    else:
        click.echo(
            f"tenant {entry.tenant} removed; its store is kept at {printable(entry.url.display())}"
        )


@tenants.command()
@click.argument("tenant")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URL",
    help="The new store (PostgreSQL; without ?schema= the schema is tenant_ID).",
)
@FORMAT_OPTION
def move(tenant: str, to: str, output_format: str) -> None:
    """Move TENANT's store to another PostgreSQL server or database, losing nothing.

    Copies the events while the tenant keeps working, then switches: for a
    moment appends are refused with a retryable answer (HTTP 503), the rest is
    copied, the copy's hash chain is verified against the source, and the
    directory names the new store. The old store is kept, frozen: it refuses
    new events. A move that stopped half-way can be run again.
    """
    ctx = cli_context()

    def show(stage: str, count: int) -> None:
        if output_format != "json":
            what = "copied" if stage == "copy" else "copied during the switch"
            click.echo(f"{count} events {what}", err=True)

    report = move_tenant(directory(ctx.tenants_option), tenant, to, on_progress=show)
    if output_format == "json":
        emit_json(report.as_dict())
        return
    rows = sum(report.tables.values())
    click.echo(
        f"tenant {report.tenant} moved to {printable(report.destination)}: "
        f"{report.events_before_switch + report.events_during_switch} events "
        f"(chain verified, head {report.head}), {rows} rows of {len(report.tables)} tables; "
        f"appends waited {report.switch_seconds:.2f} s. The old store "
        f"{printable(report.source)} is kept and refuses new events."
    )
