"""The `ledger` command."""

from __future__ import annotations

import sqlite3
import sys
from typing import NoReturn

import click
import psycopg
from eventsourcing.persistence import PersistenceError

from cli.append import append
from cli.audit import audit
from cli.context import EXIT_UNAVAILABLE, EXIT_USAGE, CliContext, CliError
from cli.db import db
from cli.demo import demo
from cli.projections import projections
from cli.relay import relay
from cli.schemas import schemas
from cli.tab import tab
from ledger.application import first_line
from ledger.config import (
    DATABASE_URL_ENV,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LOCK_TIMEOUT,
    ConfigError,
)
from ledger.db import DatabaseUnavailable
from ledger.printable import printable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (append, demo, schemas, db, tab, projections, audit, relay):
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
    except DatabaseUnavailable as exc:
        if debug:
            raise
        if _mentions(exc, "readonly database"):
            _read_only()
        click.echo(f"error: {printable(str(exc))}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except ConfigError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        if _is_missing_table(exc):
            click.echo(
                f"error: {first_line(exc)}: the ledger's tables are missing; run `ledger db "
                "migrate` (LEDGER_AUTO_MIGRATE=0 stops commands from creating them)",
                err=True,
            )
            sys.exit(EXIT_USAGE)
        if _mentions(exc, "database is locked"):
            click.echo(
                "error: the database is locked: another writer held it longer than this "
                "command waits (raise it with sqlite:///PATH?lock_timeout=SECONDS; default "
                f"{DEFAULT_LOCK_TIMEOUT})",
                err=True,
            )
            sys.exit(EXIT_UNAVAILABLE)
        if _mentions(exc, "readonly database"):
            _read_only()
        if _mentions(exc, "idle-in-transaction timeout"):
            click.echo(
                "error: the import waited for input longer than PostgreSQL lets a transaction "
                "sit idle, and the server ended it; nothing stored (feed the input faster, "
                "use --skip-invalid for a transaction per batch, or raise "
                f"?idle_timeout=SECONDS in the URL; default {DEFAULT_IDLE_TIMEOUT})",
                err=True,
            )
            sys.exit(EXIT_UNAVAILABLE)
        click.echo(
            f"error: {type(exc).__name__}: {printable(first_line(exc))} "
            "(run with --debug for details)",
            err=True,
        )
        sys.exit(1)


def _mentions(exc: BaseException, text: str) -> bool:
    """A store error (or its cause) whose message says `text` (SQLite's wording)."""
    return any(e is not None and text in str(e) for e in (exc, exc.__cause__))


def _read_only() -> NoReturn:
    click.echo(
        "error: the database is read-only: the file given by --db / "
        f"{DATABASE_URL_ENV} (and its directory) must be writable",
        err=True,
    )
    sys.exit(EXIT_USAGE)


def _is_missing_table(exc: BaseException) -> bool:
    """A table that `ledger db migrate` would have created, on either store."""
    for e in (exc, exc.__cause__):
        if isinstance(e, psycopg.errors.UndefinedTable):
            return True
        if isinstance(e, sqlite3.OperationalError) and "no such table" in str(e):
            return True
        if isinstance(e, PersistenceError) and (
            ("does not exist" in str(e) and "relation" in str(e)) or "no such table" in str(e)
        ):
            return True
    return False


__all__ = ["CliError", "ledger", "main"]
