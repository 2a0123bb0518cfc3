"""`ledger note`: add a note to a customer as a user, as the API and the card page do."""

from __future__ import annotations

import click

from cli.context import FORMAT_OPTION, cli_context, emit_json
from cli.options import ACTING_USER_OPTION, IDEMPOTENCY_KEY_OPTION
from ledger.printable import printable
from services.bootstrap import prepare_store
from services.notes import NoteRequest, add_note


@click.group()
def note() -> None:
    """Add a note to a customer as a user."""


@note.command()
@click.argument("customer_id")
@click.argument("text")
@ACTING_USER_OPTION
@IDEMPOTENCY_KEY_OPTION
@FORMAT_OPTION
def add(
    customer_id: str, text: str, user: str, idempotency_key: str | None, output_format: str
) -> None:
    """Add a note with TEXT to CUSTOMER_ID as USER (the note id is the ledger's)."""
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        result = add_note(
            ctx.app(),
            conn,
            ctx.policy(),
            NoteRequest(
                customer_id=customer_id,
                user_id=user,
                text=text,
                idempotency_key=idempotency_key,
                source="ledger-cli",
                people=ctx.people(),
            ),
        )
    item = result.item.model_dump(mode="json")
    if output_format == "json":
        emit_json({"note": item, "stored": result.stored})
        return
    done = "added" if result.stored else "already added with this idempotency key"
    click.echo(printable(f"note {item['data']['note_id']} {done}: {item['summary']}"))
