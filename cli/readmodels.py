"""What the read-model commands (`tab`, `projections`, `demo`) share: a store
made ready for projections, and their errors turned into clear CLI errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click

from cli.context import EXIT_REJECTED, EXIT_UNAVAILABLE, EXIT_USAGE, CliError
from ledger.application import LedgerApplication, first_line
from ledger.config import auto_migrate
from ledger.db import Connection
from ledger.reading import events_table_exists
from projections import registry
from projections.base import Projection
from projections.runner import UNAVAILABLE_ERRORS, ProjectionError
from projections.schema import SchemaMissing, require_schema


def prepare_store(conn: Connection) -> None:
    """Events table and read-model tables in place, created on first use
    unless LEDGER_AUTO_MIGRATE=0."""
    if not events_table_exists(conn):
        if not auto_migrate():
            raise SchemaMissing(
                "the events table is missing: run `ledger db migrate` "
                "(LEDGER_AUTO_MIGRATE=0 stops commands from creating it)"
            )
        LedgerApplication(conn.url, create_tables=True).close()
    require_schema(conn, auto_migrate())


@contextmanager
def projection_errors() -> Iterator[None]:
    try:
        yield
    except SchemaMissing as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except ProjectionError as exc:
        raise CliError(str(exc), EXIT_REJECTED) from exc
    except registry.UnknownProjection as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {first_line(exc)}", EXIT_UNAVAILABLE) from exc


def choose(names: Sequence[str], all_: bool, *, required: bool) -> list[Projection]:
    """The projections a command acts on: the NAMEs given, or --all."""
    if names and all_:
        raise CliError("give projection names or --all, not both", EXIT_USAGE)
    if required and not names and not all_:
        raise CliError(f"name a projection ({', '.join(registry.NAMES)}) or pass --all", EXIT_USAGE)
    with projection_errors():
        return registry.select(names)


def echo_err(message: str) -> None:
    click.echo(message, err=True)
