"""`ledger task`: add a task or act on one as a user, as the API and the card page do."""

from __future__ import annotations

from typing import Any

import click

from cli.context import EXIT_USAGE, FORMAT_OPTION, CliError, cli_context, emit_json
from cli.options import ACTING_USER_OPTION, IDEMPOTENCY_KEY_OPTION
from ledger.printable import printable
from services.bootstrap import prepare_store
from services.tasks import FieldChange, NewTaskRequest, TaskActionRequest, add_task, task_action


@click.group()
def task() -> None:
    """Add, complete, reopen, delete or edit a task, checked as the domain checks any event."""


def _act(
    customer_id: str,
    task_id: str,
    action: str,
    user: str,
    changes: tuple[FieldChange, ...],
    idempotency_key: str | None,
    output_format: str,
) -> None:
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        result = task_action(
            ctx.app(),
            conn,
            ctx.policy(),
            TaskActionRequest(
                customer_id=customer_id,
                task_id=task_id,
                action=action,
                user_id=user,
                changes=changes,
                idempotency_key=idempotency_key,
                source="ledger-cli",
                people=ctx.people(),
            ),
        )
    item: dict[str, Any] | None = result.task.model_dump(mode="json") if result.task else None
    if output_format == "json":
        emit_json({"task": item, "deleted": item is None, "stored": result.stored})
        return
    note = "" if result.stored else " (already done with this idempotency key)"
    if item is None:
        click.echo(printable(f"task {task_id}: deleted{note}"))
    else:
        actions = ", ".join(item["actions"]) or "-"
        click.echo(printable(f"task {task_id}: {item['status']}; {user} may now: {actions}{note}"))


def _simple(action: str, verb: str) -> click.Command:
    @click.command(name=action, help=f"{verb} TASK_ID of CUSTOMER_ID as USER.")
    @click.argument("customer_id")
    @click.argument("task_id")
    @ACTING_USER_OPTION
    @IDEMPOTENCY_KEY_OPTION
    @FORMAT_OPTION
    def command(
        customer_id: str, task_id: str, user: str, idempotency_key: str | None, output_format: str
    ) -> None:
        _act(customer_id, task_id, action, user, (), idempotency_key, output_format)

    return command


for _action, _verb in (("complete", "Complete"), ("reopen", "Reopen"), ("delete", "Delete")):
    task.add_command(_simple(_action, _verb))


def _change(text: str) -> FieldChange:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CliError(f"--set {text!r}: expected FIELD=VALUE", EXIT_USAGE)
    # An empty VALUE clears the field.
    return FieldChange(name, value if value else None)


@task.command()
@click.argument("customer_id")
@click.argument("task_id")
@ACTING_USER_OPTION
@click.option(
    "--set",
    "sets",
    multiple=True,
    required=True,
    metavar="FIELD=VALUE",
    help="A change (repeatable), e.g. --set title=Call back; an empty VALUE clears the field.",
)
@IDEMPOTENCY_KEY_OPTION
@FORMAT_OPTION
def edit(
    customer_id: str,
    task_id: str,
    user: str,
    sets: tuple[str, ...],
    idempotency_key: str | None,
    output_format: str,
) -> None:
    """Edit TASK_ID of CUSTOMER_ID as USER; the old values are filled in from the task."""
    changes = tuple(_change(s) for s in sets)
    _act(customer_id, task_id, "edit", user, changes, idempotency_key, output_format)


@task.command()
@click.argument("customer_id")
@click.argument("title")
@click.option("--due", metavar="TIME", help="When it is due: RFC 3339, or YYYY-MM-DD (UTC).")
@click.option("--assignee", metavar="ID", help="The user it is assigned to.")
@click.option("--text", metavar="TEXT", help="A longer description.")
@ACTING_USER_OPTION
@IDEMPOTENCY_KEY_OPTION
@FORMAT_OPTION
def add(
    customer_id: str,
    title: str,
    due: str | None,
    assignee: str | None,
    text: str | None,
    user: str,
    idempotency_key: str | None,
    output_format: str,
) -> None:
    """Add a task titled TITLE to CUSTOMER_ID as USER (the task id is the ledger's)."""
    ctx = cli_context()
    with ctx.connect() as conn:
        prepare_store(conn)
        result = add_task(
            ctx.app(),
            conn,
            ctx.policy(),
            NewTaskRequest(
                customer_id=customer_id,
                user_id=user,
                title=title,
                due_at=due,
                assignee_id=assignee,
                text=text,
                idempotency_key=idempotency_key,
                source="ledger-cli",
                people=ctx.people(),
            ),
        )
    assert result.task is not None
    item = result.task.model_dump(mode="json")
    if output_format == "json":
        emit_json({"task": item, "stored": result.stored})
        return
    note = "" if result.stored else " (already added with this idempotency key)"
    due_text = f", due {item['due_at']}" if item["due_at"] else ""
    who = f", assigned to {item['assignee_id']}" if item["assignee_id"] else ""
    click.echo(printable(f"task {item['task_id']} added: {item['title']}{due_text}{who}{note}"))
