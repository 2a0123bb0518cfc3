"""`ledger tab CUSTOMER_ID TAB`: one tab of a customer's "Previous interactions"."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

import click

from cli.context import FORMAT_OPTION, cli_context, emit_json
from cli.tables import Column, echo_table
from ledger.kinds import KINDS
from ledger.printable import printable
from ledger.rights import ALLOW_ALL
from ledger.summaries import channel_text, duration_text, field_label, utm_text, words
from services.bootstrap import prepare_store
from services.merging import resolve
from services.tabs import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    PAGE_LIMIT,
    TAB_PARAMETERS,
    TABS,
    tab_request,
    tab_rows,
)


def _when(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _actor(item: dict[str, Any]) -> str:
    actor = item["actor"]
    return str(actor.get("name") or f"{actor['kind']}:{actor['id']}")


def _person(name: object, person_id: object) -> str | None:
    return str(name) if name else None if person_id is None else str(person_id)


def _value(value: object) -> str:
    return "-" if value is None else str(value)


def _total(item: dict[str, Any]) -> str | None:
    total = item["total"]
    return None if total is None else f"{total} {item['currency'] or ''}".rstrip()


COLUMNS: dict[str, list[Column]] = {
    "timeline": [
        Column("OCCURRED (UTC)", lambda i: _when(i["occurred_at"])),
        Column("KIND", lambda i: i["kind"]),
        Column("SUMMARY", lambda i: i["summary"], width=70),
        Column("BY", _actor, width=24),
    ],
    "tasks": [
        Column("TASK", lambda i: i["task_id"], width=24),
        Column("TITLE", lambda i: i["title"]),
        Column("STATUS", lambda i: words(i["status"])),
        Column("CREATED (UTC)", lambda i: _when(i["created_at"])),
        Column("DUE (UTC)", lambda i: _when(i["due_at"])),
        Column("ASSIGNEE", lambda i: _person(i.get("assignee_name"), i["assignee_id"]), width=24),
        Column("ACTIONS", lambda i: ", ".join(i["actions"]) or "-"),
    ],
    "visits": [
        Column("STARTED (UTC)", lambda i: _when(i["started_at"])),
        Column("SITE", lambda i: i["site"], width=30),
        Column("SOURCE", lambda i: i["source"], width=30),
        Column("CHANNEL", lambda i: channel_text(i["channel"])),
        Column("DURATION", lambda i: duration_text(i["duration_s"]), right=True),
        Column("PAGES", lambda i: i["pages_viewed"], right=True),
        Column("CAMPAIGN", lambda i: utm_text(i.get("utm") or {}), width=40),
    ],
    "segments": [
        Column("OCCURRED (UTC)", lambda i: _when(i["occurred_at"])),
        Column("CHANGE", lambda i: words(i["change"])),
        Column("SEGMENT", lambda i: i["segment_name"] or i["segment_id"]),
        Column("BY", _actor, width=24),
    ],
    "chats": [
        Column("DIALOG", lambda i: i["dialog_id"], width=24),
        Column("STARTED (UTC)", lambda i: _when(i["started_at"])),
        Column("STATUS", lambda i: words(i["status"])),
        Column("MESSAGES", lambda i: i["message_count"], right=True),
        Column("CHANNEL", lambda i: channel_text(i["channel"])),
        Column("URL", lambda i: i["url"], width=50),
    ],
    "emails": [
        Column("SENT (UTC)", lambda i: _when(i["sent_at"])),
        Column("SUBJECT", lambda i: i["subject"], width=50),
        Column("DELIVERED", lambda i: i["delivered"]),
        Column("FIRST OPEN (UTC)", lambda i: _when(i["opened_at"])),
        Column("OPENS", lambda i: i["open_count"], right=True),
        Column("CLICKS", lambda i: i["clicks"], right=True),
    ],
    "orders": [
        Column("ORDER", lambda i: i["number"] or i["order_id"], width=24),
        Column("CREATED (UTC)", lambda i: _when(i["created_at"])),
        Column("TOTAL", _total, width=24, right=True),
        Column("STATUS", lambda i: i["status"], width=24),
        Column("LAST CHANGE (UTC)", lambda i: _when(i["changed_at"])),
        Column("ID", lambda i: i["order_id"], width=24),
    ],
    "card": [
        Column("OCCURRED (UTC)", lambda i: _when(i["occurred_at"])),
        Column("FIELD", lambda i: field_label(i["field"]), width=24),
        Column("OLD", lambda i: _value(i["old"]), width=30),
        Column("NEW", lambda i: _value(i["new"]), width=30),
        Column("BY", _actor, width=24),
    ],
}


@click.command(name="tab")
@click.argument("customer_id")
@click.argument("tab_name", metavar="TAB", type=click.Choice(TABS))
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help="timeline: only these kinds (repeatable).",
)
@click.option("--since", metavar="TIME", help="timeline: from this time on (RFC 3339 or date).")
@click.option("--until", metavar="TIME", help="timeline: before this time (RFC 3339 or date).")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    help=f"Items per page [default {PAGE_LIMIT}; timeline {DEFAULT_LIMIT}].",
)
@click.option("--cursor", help="The next page, as printed by the previous one.")
@click.option(
    "--as",
    "viewer",
    metavar="USER",
    help="tasks: show the actions USER may take under the rights policy.",
)
@FORMAT_OPTION
def tab(
    customer_id: str,
    tab_name: str,
    kinds: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int | None,
    cursor: str | None,
    viewer: str | None,
    output_format: str,
) -> None:
    """Show one TAB of CUSTOMER_ID's interactions (newest first).

    TAB is one of: timeline, tasks, visits, segments, chats, emails, orders,
    card. The read model is brought up to date with every event stored so far
    before answering, so what `ledger append` stored is always shown. A
    customer merged into another shows that customer's tab (a note on stderr
    says so).
    """
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        into = resolve(conn, customer_id)
        if into is not None:
            # A merged-away customer's tabs are its priority customer's.
            click.echo(
                printable(f"customer {customer_id} is merged into {into}: showing {into}"),
                err=True,
            )
            customer_id = into
        request = tab_request(
            customer_id,
            tab_name,
            kinds=kinds,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
            viewer=viewer,
            policy=ctx.policy() if viewer is not None else ALLOW_ALL,
            names={p: f"--{p}" for p in TAB_PARAMETERS},
            people=ctx.people(),
        )
        answer = tab_rows(conn, request)
    if output_format == "json":
        emit_json(answer)
        return
    _print_human(answer)
    if answer.get("next_cursor"):
        given = {"--kind": kinds, "--since": since, "--until": until, "--limit": limit}
        given["--as"] = viewer
        click.echo("")
        click.echo(f"more: {_next_command(customer_id, tab_name, given, answer['next_cursor'])}")


def _next_command(customer_id: str, tab_name: str, given: dict[str, Any], cursor: str) -> str:
    """The command that shows the next page: this one's options, and the cursor."""
    words = ["ledger", "tab", customer_id, tab_name]
    for option, value in given.items():
        values = value if isinstance(value, tuple) else () if value is None else (value,)
        for v in values:
            words += [option, str(v)]
    words += ["--cursor", cursor]
    return printable(shlex.join(words))


def _print_human(answer: dict[str, Any]) -> None:
    name, items = answer["tab"], answer["items"]
    customer = printable(answer["customer_id"])
    click.echo(f"{customer}: {name} ({len(items)} item{'s' * (len(items) != 1)})")
    if name == "segments":
        names = [m["segment_name"] or m["segment_id"] for m in answer["member_of"]]
        click.echo(f"member of: {printable(', '.join(names)) or '-'}")
    if name == "emails" and answer["last_email"]:
        last = answer["last_email"]
        click.echo(
            f"last email: {printable(last['message_id'])} "
            f"({'opened' if last['opened'] else 'not opened'})"
        )
    if items:
        click.echo("")
        echo_table(COLUMNS[name], items)
