"""`ledger customers merge` and `ledger customers unmerge`: two cards of one
person become one, and back (docs/merging.md)."""

from __future__ import annotations

from typing import Any

import click

from cli.context import FORMAT_OPTION, cli_context, emit_json
from cli.options import ACTING_USER_OPTION
from ledger.printable import printable
from services.bootstrap import prepare_store
from services.merging import (
    MAX_ABSORBED,
    MergeOutcome,
    MergeRequest,
    UnmergeRequest,
    merge_customers,
    unmerge_customers,
)


def _keep(values: tuple[str, ...]) -> dict[str, str]:
    keep: dict[str, str] = {}
    for value in values:
        field, sep, owner = value.partition("=")
        if not sep or not field or not owner:
            raise click.BadParameter(f"{value!r}: write FIELD=CUSTOMER_ID", param_hint="--keep")
        keep[field] = owner
    return keep


def _value(value: Any) -> str:
    return "-" if value is None else str(value)


def _print_outcome(outcome: MergeOutcome) -> None:
    absorbed = ", ".join(outcome.absorbed)
    if outcome.applied:
        click.echo(printable(f"merged {absorbed} into {outcome.customer_id}"))
    else:
        click.echo(printable(f"preview: merge {absorbed} into {outcome.customer_id}"))
    click.echo("card:")
    for field, value in outcome.card.items():
        click.echo(printable(f"  {field}: {_value(value)}"))
    moved = ", ".join(f"{tab} {n}" for tab, n in outcome.moved.items() if n)
    click.echo(printable(f"moves: {moved or 'nothing'}"))
    for conflict in outcome.conflicts:
        values = "; ".join(f"{c}: {_value(v)}" for c, v in conflict.values.items())
        kept = outcome.card.get(conflict.field)
        click.echo(printable(f"differs: {conflict.field} ({values}); keeps {_value(kept)}"))
    if outcome.needs_confirmation and not outcome.applied:
        click.echo(printable(f"needs --confirm: {outcome.why}"))


@click.command()
@click.argument("priority")
@click.argument("absorbed", nargs=-1, required=True)
@ACTING_USER_OPTION
@click.option("--reason", default="", help="Why they are one person; stored (needed to merge).")
@click.option(
    "--keep",
    "keep",
    multiple=True,
    metavar="FIELD=CUSTOMER_ID",
    help="Whose value a differing card field keeps (default: PRIORITY's). Repeatable.",
)
@click.option(
    "--dry-run", is_flag=True, help="Show the resulting card and what moves; store nothing."
)
@click.option(
    "--confirm",
    is_flag=True,
    help="Merge customers that share no phone number or e-mail address.",
)
@FORMAT_OPTION
def merge(
    priority: str,
    absorbed: tuple[str, ...],
    user: str,
    reason: str,
    keep: tuple[str, ...],
    dry_run: bool,
    confirm: bool,
    output_format: str,
) -> None:
    """Merge ABSORBED customers (up to 20) into PRIORITY, as USER (needs the right
    customers.merge). Nothing stored is copied: PRIORITY's tabs show every
    customer's interactions, and events still sent under an absorbed id show
    there too. `ledger customers unmerge` undoes it exactly."""
    if len(absorbed) > MAX_ABSORBED:
        raise click.BadParameter(f"at most {MAX_ABSORBED} customers", param_hint="ABSORBED")
    ctx = cli_context()
    request = MergeRequest(
        customer_id=priority,
        absorb=absorbed,
        user_id=user,
        reason=reason,
        keep=_keep(keep),
        dry_run=dry_run,
        confirm=confirm,
        source="ledger-cli",
    )
    with ctx.connect() as conn:
        prepare_store(conn)
        outcome = merge_customers(ctx.app(), conn, ctx.policy(), request)
    if output_format == "json":
        emit_json(outcome.as_json())
        return
    _print_outcome(outcome)


@click.command()
@click.argument("priority")
@click.argument("absorbed")
@ACTING_USER_OPTION
@click.option("--reason", required=True, help="Why the merge is undone; stored.")
@FORMAT_OPTION
def unmerge(priority: str, absorbed: str, user: str, reason: str, output_format: str) -> None:
    """Undo the merge of ABSORBED into PRIORITY, as USER (needs the right
    customers.merge): each customer's tabs are again exactly their own, with
    what arrived since under each id."""
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        result = unmerge_customers(
            ctx.app(),
            conn,
            ctx.policy(),
            UnmergeRequest(priority, absorbed, user, reason, source="ledger-cli"),
        )
    if output_format == "json":
        emit_json(result.as_json())
        return
    click.echo(printable(f"{absorbed} is no longer merged into {priority}"))
