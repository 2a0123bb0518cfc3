"""`ledger customers find | erase | export` (and, from cli.duplicates, `duplicates`
and `not-duplicates`) and `ledger keys init | status | rotate-master` (docs/privacy.md)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import click

from cli.context import EXIT_USAGE, FORMAT_OPTION, CliError, cli_context, emit_json
from cli.tables import Column, echo_table
from ledger.environment import MASTER_KEY_ENV
from ledger.printable import printable
from services.bootstrap import prepare_store
from services.customers import (
    SEARCH_LIMIT,
    SEARCH_MAX_LIMIT,
    erase_customer,
    export_customer,
    find_customers,
)
from services.keys import init_master_key, keys_status, rotate_master


@click.group()
def customers() -> None:
    """Finding customers; a customer's personal data: erasure and access requests."""


_FOUND_COLUMNS = (
    Column("customer", lambda m: m["customer_id"]),
    Column("name", lambda m: m["name"]),
    Column("matched", lambda m: m["matched"]),
)


@customers.command()
@click.argument("query")
@click.option(
    "--limit",
    type=click.IntRange(1, SEARCH_MAX_LIMIT),
    default=SEARCH_LIMIT,
    show_default=True,
    help="Customers per page.",
)
@click.option("--cursor", help="The next page, as printed by the previous one.")
@FORMAT_OPTION
def find(query: str, limit: int, cursor: str | None, output_format: str) -> None:
    """Find customers by QUERY: a customer id, a phone number in any notation
    (national numbers in the default region, `ledger --region`), an e-mail address
    (any case), or name words (all of them must match)."""
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        answer = find_customers(conn, query, limit=limit, cursor=cursor).as_json()
    if output_format == "json":
        emit_json(answer)
        return
    items = answer["items"]
    if not items:
        click.echo(f'No customer found for "{printable(answer["query"])}".')
        return
    echo_table(_FOUND_COLUMNS, items)
    if answer["next_cursor"]:
        words = ["ledger", "customers", "find", answer["query"], "--limit", str(limit)]
        more = shlex.join([*words, "--cursor", answer["next_cursor"]])
        click.echo(f"\nmore: {printable(more)}")


@customers.command()
@click.argument("customer_id")
@click.option("--reason", required=True, help="Why (e.g. the request's reference); stored.")
@click.option(
    "--requested-by",
    default=lambda: os.environ.get("USER") or "cli",
    show_default="$USER",
    help="Who asked for the erasure; stored.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@FORMAT_OPTION
def erase(customer_id: str, reason: str, requested_by: str, yes: bool, output_format: str) -> None:
    """Erase CUSTOMER_ID's personal data for good: its key is destroyed, every
    reader shows its personal values as erased, and no new event is accepted.
    The events stay (ids, types, times, actors), so `audit verify` still holds."""
    if not yes and not click.confirm(
        f"Erase the personal data of customer {printable(customer_id)}? This cannot be undone"
    ):
        raise CliError("nothing erased", EXIT_USAGE)
    ctx = cli_context()
    result = erase_customer(ctx.app(), ctx.policy(), customer_id, reason, requested_by)
    if output_format == "json":
        emit_json(
            {"customer_id": customer_id, "erased": result.erased, "position": result.position}
        )
    elif result.erased:
        click.echo(f"customer {printable(customer_id)} erased (position {result.position})")
    else:
        click.echo(f"customer {printable(customer_id)} was already erased; nothing changed")


@customers.command()
@click.argument("customer_id")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
def export(customer_id: str, out: Path | None) -> None:
    """Every event of CUSTOMER_ID with personal values decrypted, and the current
    card, tasks, orders, memberships ..., as JSON (an access or portability request)."""
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        document = export_customer(conn, customer_id)
    text = json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror}", EXIT_USAGE) from exc
    click.echo(
        f"wrote {len(document['events'])} events of {printable(customer_id)} to {out}", err=True
    )


@click.group()
def keys() -> None:
    """The master key and the customers' data keys."""


@keys.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def init(path: Path) -> None:
    """Create a new master key in PATH (never overwrites one); then point
    LEDGER_MASTER_KEY_FILE or --master-key at it."""
    key_id = init_master_key(path)
    click.echo(f"master key {key_id} written to {path}; set {MASTER_KEY_ENV}={path}")


@keys.command()
@FORMAT_OPTION
def status(output_format: str) -> None:
    """Where the keys live, which master key is in use, how many customers are
    erased, and whether any key is wrapped by another master key."""
    s = keys_status(cli_context().app())
    if output_format == "json":
        emit_json(s.__dict__)
        return
    click.echo(f"key table:   {s.keystore}")
    click.echo(f"master key:  {s.master_key} (id {s.master_id})")
    click.echo(f"customers:   {s.customers} ({s.erased} erased)")
    if s.other_master:
        click.echo(f"warning: {s.other_master} keys are wrapped by another master key")


@keys.command(name="rotate-master")
@click.argument("new_key", type=click.Path(dir_okay=False, path_type=Path))
def rotate_master_command(new_key: Path) -> None:
    """Rewrap every data key under the master key in NEW_KEY (create it with
    `ledger keys init`), in one transaction; then use NEW_KEY and destroy the old one."""
    count = rotate_master(cli_context().app(), new_key)
    click.echo(f"rewrapped {count} data keys; now set {MASTER_KEY_ENV}={new_key}")


def _add_duplicates() -> None:
    from cli.duplicates import duplicates, not_duplicates
    from cli.merging import merge, unmerge

    customers.add_command(duplicates)
    customers.add_command(not_duplicates)
    customers.add_command(merge)
    customers.add_command(unmerge)


_add_duplicates()
