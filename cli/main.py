"""The `ledger` command."""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path

import click

from ledger.environment import (
    DATABASE_URL_ENV,
    DEFAULT_REGION_ENV,
    MASTER_KEY_ENV,
    PEOPLE_FILE_ENV,
    RIGHTS_POLICY_ENV,
    TENANT_ENV,
    TENANTS_URL_ENV,
)
from ledger.printable import printable

# Each command's module is imported only when that command runs: `ledger tab`
# must not pay for Kafka, the HTTP stack or the rebuild machinery, and
# `ledger --help` for none of them. name -> (module, attribute, summary); the
# summary is the first paragraph of the command's docstring, which `--help`
# lists (tests/integration/test_startup.py keeps the two equal).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "access": ("cli.serve", "access", "Access keys for `ledger serve`."),
    "append": (
        "cli.append",
        "append",
        "Append events from PATH (NDJSON or a JSON array; '-' for stdin).",
    ),
    "audit": (
        "cli.audit",
        "audit",
        "Audit trail: who changed what and when, and proof nothing was altered since.",
    ),
    "customers": (
        "cli.privacy",
        "customers",
        "Finding customers; a customer's personal data: erasure and access requests.",
    ),
    "db": ("cli.db", "db", "Database schema management."),
    "keys": ("cli.privacy", "keys", "The master key and the customers' data keys."),
    "demo": (
        "cli.demo",
        "demo",
        "Store demo customers with every kind of interaction (idempotent), then print "
        'one customer\'s "Previous interactions".',
    ),
    "note": ("cli.note", "note", "Add a note to a customer as a user."),
    "projections": (
        "cli.projections",
        "projections",
        "Per-tab read models: keep them current, inspect, rebuild, reset.",
    ),
    "relay": ("cli.relay", "relay", "Publish stored events to Kafka (the outbox relay)."),
    "schemas": (
        "cli.schemas",
        "schemas",
        "JSON Schemas of the event contracts; the HTTP API's OpenAPI document.",
    ),
    "serve": (
        "cli.serve",
        "serve",
        "Serve the HTTP API (see docs/http.md): append, tabs, task actions, audit, "
        "projection status, health and metrics.",
    ),
    "tenants": (
        "cli.tenants",
        "tenants",
        "The tenant directory: which store holds each tenant (shop) of a hosted deployment.",
    ),
    "tab": ("cli.tab", "tab", "Show one TAB of CUSTOMER_ID's interactions (newest first)."),
    "task": (
        "cli.task",
        "task",
        "Add, complete, reopen, delete or edit a task, checked as the domain checks any event.",
    ),
}


def load_command(name: str) -> click.Command:
    module, attribute, _ = COMMANDS[name]
    # Importing a command creates a few hundred classes (pydantic models,
    # dataclasses) and nothing that is garbage; the cyclic collector would sweep
    # them over and over meanwhile (about 15 % of a `ledger tab`'s CPU).
    gc.disable()
    try:
        command = getattr(importlib.import_module(module), attribute)
    finally:
        gc.enable()
    assert isinstance(command, click.Command)
    return command


class _LedgerGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing from the summaries, importing no command module.
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=summary).get_short_help_str(limit))
            for name, (_, _, summary) in sorted(COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        # Service errors become CLI errors here, for every command at once (the
        # service is imported by every command that can raise them).
        from cli.context import EXIT_CODES, CliContext, CliError
        from services.errors import classify

        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:
            # Known failures from below (a ServiceError, or one the service layer
            # classifies, such as a missing master key met on a read path).
            known = classify(exc)
            if known is None or (isinstance(ctx.obj, CliContext) and ctx.obj.debug):
                raise  # main() shows the traceback
            raise CliError(known.message, EXIT_CODES[known.category]) from exc


@click.group(cls=_LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_option",
    metavar="URL",
    help=f"Database URL: sqlite:///PATH or postgresql://... [env {DATABASE_URL_ENV}; "
    "default sqlite:///ledger.db]",
)
@click.option(
    "--tenant",
    "tenant_option",
    metavar="ID",
    help=f"Act on this tenant's store, found in the tenant directory, instead of --db "
    f"[env {TENANT_ENV}].",
)
@click.option(
    "--tenants-db",
    "tenants_option",
    metavar="URL",
    help=f"The tenant directory's database [env {TENANTS_URL_ENV}].",
)
@click.option(
    "--rights",
    "rights_option",
    metavar="PATH",
    help=f"Rights policy TOML file [env {RIGHTS_POLICY_ENV}; default: everything allowed].",
)
@click.option(
    "--people",
    "people_option",
    metavar="PATH",
    help=f"People directory, users' names by id (CSV or TOML) [env {PEOPLE_FILE_ENV}].",
)
@click.option(
    "--master-key",
    "master_key",
    metavar="PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Master key file [env {MASTER_KEY_ENV}; SQLite default: beside the database].",
)
@click.option(
    "--region",
    "region",
    metavar="CODE",
    help=f"Country of phone numbers without a country code, for the customer search "
    f"[env {DEFAULT_REGION_ENV}; default DE].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="interaction-ledger")
@click.pass_context
def ledger(
    ctx: click.Context,
    db_option: str | None,
    tenant_option: str | None,
    tenants_option: str | None,
    rights_option: str | None,
    people_option: str | None,
    master_key: Path | None,
    region: str | None,
    debug: bool,
) -> None:
    """The interaction ledger: an append-only history of every customer interaction."""
    from cli.context import CliContext
    from services.keys import use_master_key

    # Always set: a test runs many commands in one process.
    use_master_key(master_key)
    _use_region(region)

    obj = CliContext(
        db_option=db_option,
        rights_option=rights_option,
        people_option=people_option,
        debug=debug,
        tenant_option=tenant_option,
        tenants_option=tenants_option,
    )
    ctx.obj = obj
    ctx.call_on_close(obj.close)


def _use_region(region: str | None) -> None:
    from cli.context import EXIT_USAGE, CliError
    from services.errors import ServiceError
    from services.regions import use_default_region

    try:
        use_default_region(region)
    except ServiceError as exc:
        raise CliError(exc.message, EXIT_USAGE) from None


def main() -> None:
    """The `ledger` console script: runs the command and turns every failure into
    one `error:` line and an exit code (a traceback only with `--debug`)."""
    debug = "--debug" in sys.argv
    try:
        # Without standalone mode click returns an Exit's code instead of exiting.
        code = ledger.main(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        from cli.context import EXIT_CODES
        from ledger.printable import first_line
        from services.errors import classify

        known = classify(exc)
        if known is not None:
            click.echo(f"error: {printable(known.message)}", err=True)
            sys.exit(EXIT_CODES[known.category])
        click.echo(
            f"error: {type(exc).__name__}: {printable(first_line(exc))} "
            "(run with --debug for details)",
            err=True,
        )
        sys.exit(1)


__all__ = ["ledger", "main"]
