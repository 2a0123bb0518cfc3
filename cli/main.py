"""The `ledger` command."""

from __future__ import annotations

import sys

import click

from cli.append import append
from cli.audit import audit
from cli.context import EXIT_CODES, CliContext, CliError
from cli.db import db
from cli.demo import demo
from cli.projections import projections
from cli.relay import relay
from cli.schemas import schemas
from cli.serve import access, serve
from cli.tab import tab
from cli.task import task
from ledger.application import first_line
from ledger.config import DATABASE_URL_ENV
from ledger.printable import printable
from ledger.service import ServiceError, classify


class _LedgerGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        # Service errors become CLI errors here, for every command at once.
        try:
            return super().invoke(ctx)
        except ServiceError as exc:
            if isinstance(ctx.obj, CliContext) and ctx.obj.debug:
                raise  # main() shows the traceback
            raise CliError(exc.message, EXIT_CODES[exc.category]) from exc


@click.group(cls=_LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_option",
    metavar="URL",
    help=f"Database URL: sqlite:///PATH or postgresql://... [env {DATABASE_URL_ENV}; "
    "default sqlite:///ledger.db]",
)
@click.option(
    "--rights",
    "rights_option",
    metavar="PATH",
    help="Rights policy TOML file [env LEDGER_RIGHTS_POLICY; default: everything allowed].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="interaction-ledger")
@click.pass_context
def ledger(
    ctx: click.Context, db_option: str | None, rights_option: str | None, debug: bool
) -> None:
    """The interaction ledger: an append-only history of every customer interaction."""
    obj = CliContext(db_option=db_option, rights_option=rights_option, debug=debug)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


for command in (append, demo, schemas, db, tab, task, projections, audit, relay, serve, access):
    ledger.add_command(command)


def main() -> None:
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


__all__ = ["CliError", "ledger", "main"]
