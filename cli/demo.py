"""`ledger demo`: fill the store with demo customers and show one customer's history."""

from __future__ import annotations

import io
from datetime import datetime
from urllib.parse import quote

import click

from cli.context import FORMAT_OPTION, cli_context, emit_json
from cli.serve import DEFAULT_HOST, DEFAULT_PORT
from ledger.demo import FEATURED_CUSTOMER, demo_ndjson
from ledger.input import read_items
from services.appending import append_items
from services.bootstrap import prepare_store
from services.tabs import tab_answer, tab_request


def demo_card_url() -> str:
    """The featured customer's card page on a default `ledger serve`."""
    return f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/customers/{quote(FEATURED_CUSTOMER, safe='')}"


@click.command()
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=15,
    show_default=True,
    help="Interactions to show in the preview.",
)
@FORMAT_OPTION
def demo(limit: int, output_format: str) -> None:
    """Store demo customers with every kind of interaction (idempotent), then
    print one customer's "Previous interactions"."""
    ctx = cli_context()
    app = ctx.app()
    report = append_items(app, ctx.policy(), read_items(io.StringIO("\n".join(demo_ndjson()))))
    if report.rejected:  # the demo data is ours: a rejection is a bug
        raise click.ClickException(f"demo data rejected: {report.rejected[0]}")
    with ctx.connect() as conn:
        prepare_store(conn)
        timeline = tab_answer(conn, tab_request(FEATURED_CUSTOMER, "timeline", limit=limit))
    preview = timeline.model_dump(mode="json")["items"]
    if output_format == "json":
        emit_json(
            {
                "appended": report.appended,
                "duplicates": report.duplicates,
                "database": app.url.display(),
                "customer_id": FEATURED_CUSTOMER,
                "items": preview,
                "card_url": demo_card_url(),
            }
        )
        return
    click.echo(
        f"demo data in {app.url.display()}: appended {report.appended}, "
        f"duplicates {report.duplicates}"
    )
    click.echo("")
    click.echo(
        f"Previous interactions of {FEATURED_CUSTOMER} (newest first, {len(preview)} shown):"
    )
    for item in preview:
        when = datetime.fromisoformat(item["occurred_at"])
        click.echo(f"  {when:%Y-%m-%d %H:%M}  {item['kind']:<9} {item['summary']}")
    click.echo("")
    click.echo(
        f"More: ledger tab {FEATURED_CUSTOMER} timeline   (tabs: timeline tasks visits "
        "segments chats emails orders card)"
    )
    click.echo("")
    click.echo("See the customer card in a browser: run")
    # The password of a --db URL is not repeated on the screen.
    click.echo(
        "  ledger --db URL serve    (the same --db as here)" if ctx.db_option else "  ledger serve"
    )
    click.echo(f"then open {demo_card_url()}")
