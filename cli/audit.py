"""`ledger audit`: change histories straight from the ledger, and tamper evidence.

Every command reads `ledger_events` with plain SQL and never writes or
migrates, so an auditor can run them with a read-only role
(`ledger db grant-auditor`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from cli.context import (
    EXIT_REJECTED,
    EXIT_USAGE,
    FORMAT_OPTION,
    CliError,
    cli_context,
    emit_json,
    progress_enabled,
)
from ledger.db import Connection
from services.audit import (
    FORMATS,
    VerifyReport,
    chain_head,
    events_to_verify,
    has_events,
    history_query,
    verify_request,
    write_history,
)
from services.audit import verify as verify_chain

# The audit parameters as this command line spells them, for the service's messages.
NAMES = {
    name: f"--{name}"
    for name in ("customer", "order", "task", "dialog", "email", "since", "until", "from")
}


@click.group(name="audit")
def audit() -> None:
    """Audit trail: who changed what and when, and proof nothing was altered since.

    Reads the events table directly, never the read models.
    """


@contextmanager
def _audit_connection() -> Iterator[Connection]:
    ctx = cli_context()
    url = ctx.url
    # Opening a missing SQLite file would create an empty ledger and report a
    # reassuring empty history: refuse instead.
    if url.kind == "sqlite" and not os.path.exists(url.path):
        raise CliError(f"no ledger database at {url.path}", EXIT_USAGE)
    with ctx.connect() as conn:
        if not has_events(conn):
            raise CliError(
                f"{url.display()} has no ledger events table (run `ledger db migrate` first)",
                EXIT_USAGE,
            )
        yield conn


@audit.command()
@click.option("--customer", metavar="ID", help="Every event of this customer.")
@click.option("--order", metavar="ID", help="Every event of this order.")
@click.option("--task", metavar="ID", help="Every event of this task.")
@click.option("--dialog", metavar="ID", help="Every event of this chat dialogue.")
@click.option("--email", metavar="ID", help="Every event of this email (its message_id).")
@click.option("--since", metavar="TIME", help="Only events at or after TIME (see --time).")
@click.option("--until", metavar="TIME", help="Only events before TIME (see --time).")
@click.option(
    "--time",
    "time_field",
    type=click.Choice(["occurred", "recorded"]),
    default="occurred",
    show_default=True,
    help="Which time --since/--until compare: occurred_at (when it happened, "
    "per the producer) or recorded_at (when the ledger stored it).",
)
@click.option("--actor", "actor_id", metavar="ID", help="Only events by this actor id.")
@click.option(
    "--type",
    "types",
    metavar="TYPE",
    multiple=True,
    help="Only events of this type, e.g. order.changed (repeatable).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for people; json, ndjson or csv (one row per field change) for tools.",
)
def history(
    customer: str | None,
    order: str | None,
    task: str | None,
    dialog: str | None,
    email: str | None,
    since: str | None,
    until: str | None,
    time_field: str,
    actor_id: str | None,
    types: tuple[str, ...],
    output_format: str,
) -> None:
    """Every stored event of one customer, order, task, dialogue or email.

    Read from the events table in position order, with position, event_id,
    type, occurred_at, recorded_at, actor, source and each field's old -> new.
    TIME is RFC 3339 with a zone (2026-10-01T10:00:00+02:00) or a date
    (2026-10-01, midnight UTC). An unknown id gives an empty history.
    """
    query = history_query(
        customer=customer,
        order=order,
        task=task,
        dialog=dialog,
        email=email,
        since=since,
        until=until,
        time_field=time_field,
        actor=actor_id,
        types=types,
        names=NAMES,
    )
    with _audit_connection() as conn, _quiet_broken_pipe():
        out = sys.stdout
        write_history(conn, query, output_format, out)
        out.flush()


@audit.command()
@click.option(
    "--from",
    "from_text",
    metavar="POSITION",
    help="Start at POSITION, trusting the stored hash of the event before it "
    "(combine with --anchor to prove that too).",
)
@click.option(
    "--anchor",
    "anchor_text",
    metavar="POSITION:HASH",
    help="An anchor from `ledger audit anchor`: also prove nothing up to POSITION changed.",
)
@FORMAT_OPTION
def verify(from_text: str | None, anchor_text: str | None, output_format: str) -> None:
    """Recompute the hash chain over every stored event.

    Prints `intact up to position P, head HASH` (exit 0), or the first broken
    position with what was expected and what was found (exit 1). A chain
    recomputation cannot see the newest events being deleted: keep the head it
    prints (or `ledger audit anchor`) and pass it back with --anchor.
    """
    request = verify_request(from_text, anchor_text, names=NAMES)
    with _audit_connection() as conn:
        if progress_enabled() and output_format == "human":
            total = events_to_verify(conn, request)
            with click.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
                update: Callable[[int], None] = bar.update
                report = verify_chain(conn, request, on_progress=update, names=NAMES)
        else:
            report = verify_chain(conn, request, names=NAMES)
    _print_verify(report, request.from_position, output_format)
    if not report.intact:
        raise click.exceptions.Exit(EXIT_REJECTED)


def _print_verify(report: VerifyReport, from_position: int | None, output_format: str) -> None:
    broken = report.broken
    if output_format == "json":
        out: dict[str, Any] = {
            "intact": broken is None,
            "from_position": from_position or 1,
            "start_hash": report.start_hash,
            "checked": report.checked,
            "intact_up_to": report.last_position,
            "head": report.head_hash if broken is None else None,
            "anchor": str(report.anchor) if report.anchor else None,
            "broken": None,
        }
        if broken is not None:
            out["broken"] = {
                "position": broken.position,
                "what": broken.what,
                "expected": broken.expected,
                "found": broken.found,
                "reason": broken.reason,
            }
        emit_json(out)
        return
    if broken is not None:
        click.echo(broken.summary())
        click.echo(f"  {broken.reason}")
        if report.last_position:
            click.echo(f"  intact up to position {report.last_position}")
        return
    click.echo(f"intact up to position {report.last_position}, head {report.head_hash}")
    if report.anchor is not None:
        click.echo(
            f"anchor {report.anchor} matches: nothing up to position "
            f"{report.anchor.position} changed since it was taken"
        )
    elif from_position is not None and report.checked == 0:
        click.echo(f"note: nothing new from position {from_position}")
    elif from_position is not None and from_position > 1:
        click.echo(
            f"note: checked from position {from_position} on, trusting the stored hash "
            "before it; add --anchor to prove the earlier events"
        )


@audit.command()
@FORMAT_OPTION
def anchor(output_format: str) -> None:
    """Print the current head as POSITION:HASH, for an auditor to keep outside the system.

    Later, `ledger audit verify --anchor POSITION:HASH` proves that nothing up
    to that position changed, including deletion of the newest events. The
    head is read, not recomputed: run `verify` first, or keep the head that
    `verify` prints.
    """
    with _audit_connection() as conn:
        head = chain_head(conn)
    if output_format == "json":
        emit_json({"position": head.position, "hash": head.hash, "anchor": str(head)})
    else:
        click.echo(str(head))


@contextmanager
def _quiet_broken_pipe() -> Iterator[None]:
    """`ledger audit history ... | head` should stop quietly, not with a traceback."""
    try:
        yield
    except BrokenPipeError:
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise click.exceptions.Exit(0) from None
