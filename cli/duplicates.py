"""`ledger customers duplicates` and `ledger customers not-duplicates`: customers that
share a phone number or e-mail address, and the marks that say two are not one."""

from __future__ import annotations

from typing import Any

import click

from cli.context import FORMAT_OPTION, cli_context, emit_json
from cli.options import ACTING_USER_OPTION
from cli.tables import Column, echo_table
from ledger.printable import printable
from services.bootstrap import prepare_store
from services.duplicates import (
    GROUPS_LIMIT,
    GROUPS_MAX_LIMIT,
    MarkRequest,
    duplicate_groups,
    find_duplicates,
    mark_not_duplicate,
)


def _reasons(reasons: list[dict[str, Any]]) -> str:
    return ", ".join(f"same {r['field']} {r['value']}" for r in reasons)


_CANDIDATE_COLUMNS = (
    Column("customer", lambda c: c["customer_id"]),
    Column("name", lambda c: c["name"]),
    Column("why", lambda c: _reasons(c["reasons"])),
)
_GROUP_COLUMNS = (
    Column("customers", lambda g: " ".join(c["customer_id"] for c in g["customers"])),
    Column("names", lambda g: "; ".join(c["name"] or "-" for c in g["customers"])),
    Column("why", lambda g: _reasons(g["reasons"])),
)


@click.command()
@click.argument("customer_id", required=False)
@click.option(
    "--limit",
    type=click.IntRange(1, GROUPS_MAX_LIMIT),
    default=GROUPS_LIMIT,
    show_default=True,
    help="Groups at most (without CUSTOMER_ID).",
)
@FORMAT_OPTION
def duplicates(customer_id: str | None, limit: int, output_format: str) -> None:
    """Possible duplicates of CUSTOMER_ID: customers with the same phone number (any
    notation) or e-mail address (any case), values masked; without CUSTOMER_ID,
    every group of such customers. Pairs marked "not a duplicate" are left out."""
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        if customer_id is None:
            answer = duplicate_groups(conn, limit=limit)
        else:
            answer = find_duplicates(conn, customer_id).as_json()
    if output_format == "json":
        emit_json(answer)
        return
    if customer_id is None:
        if not answer["groups"]:
            click.echo("No possible duplicates.")
            return
        echo_table(_GROUP_COLUMNS, answer["groups"])
        if answer["truncated"]:
            click.echo("\nmore groups exist: raise --limit")
        return
    if not answer["items"]:
        click.echo(f"No possible duplicates of customer {printable(customer_id)}.")
        return
    echo_table(_CANDIDATE_COLUMNS, answer["items"])


@click.command("not-duplicates")
@click.argument("customer_id")
@click.argument("other_customer_id")
@ACTING_USER_OPTION
@click.option("--reason", required=True, help="Why they are two people; stored.")
@click.option("--withdraw", is_flag=True, help="Take a standing mark back.")
@FORMAT_OPTION
def not_duplicates(
    customer_id: str,
    other_customer_id: str,
    user: str,
    reason: str,
    withdraw: bool,
    output_format: str,
) -> None:
    """Mark CUSTOMER_ID and OTHER_CUSTOMER_ID "not a duplicate" as USER (needs the
    right customers.merge): the pair is not suggested again. `--withdraw` takes
    the mark back, and the pair is suggested again."""
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
    result = mark_not_duplicate(
        ctx.app(),
        ctx.policy(),
        MarkRequest(
            customer_id=customer_id,
            other_customer_id=other_customer_id,
            user_id=user,
            reason=reason,
            withdraw=withdraw,
            source="ledger-cli",
        ),
    )
    if output_format == "json":
        emit_json(result.as_json())
        return
    pair = f"{customer_id} and {other_customer_id}"
    done = "marked not a duplicate" if result.marked else "no longer marked not a duplicate"
    click.echo(printable(f"{pair} {done}"))
