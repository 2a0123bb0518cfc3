"""`ledger schemas`: the JSON Schemas of the event contracts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.context import EXIT_REJECTED, EXIT_USAGE, FORMAT_OPTION, CliError
from ledger.catalogue_doc import render_catalogue
from ledger.compatibility import DEFAULT_EXAMPLES, CheckUnavailable, check_compatibility
from ledger.schemas import ContractChanged, write_schemas


@click.group()
def schemas() -> None:
    """JSON Schemas of the event contracts; the HTTP API's OpenAPI document."""


@schemas.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="Directory to write the schemas into.",
)
def export(out_dir: Path) -> None:
    """Write one JSON Schema per event type, plus the envelopes and the HTTP
    API's OpenAPI document (openapi.json), into OUT.

    Publishes each type's current version as versions/<type>/v<N>.json where
    it is not yet; a published version is never rewritten: when a model no
    longer matches it, nothing is written (exit 1)."""
    from api.app import openapi_json  # the HTTP stack, only for this command

    try:
        written = write_schemas(out_dir)
    except ContractChanged as exc:
        raise CliError(str(exc), EXIT_REJECTED) from None
    (out_dir / "openapi.json").write_text(openapi_json())
    click.echo(f"wrote {len(written)} schemas and openapi.json to {out_dir}")


@schemas.command()
def catalogue() -> None:
    """Print the event catalogue as Markdown (committed as docs/events.md)."""
    click.echo(render_catalogue(), nl=False)


@schemas.command()
@click.option(
    "--dir",
    "schemas_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="The committed schemas (versions/<type>/v<N>.json under it).",
)
@click.option(
    "--examples",
    type=click.IntRange(min=1),
    default=DEFAULT_EXAMPLES,
    show_default=True,
    help="Generated documents each upcaster is checked on.",
)
@FORMAT_OPTION
def check(schemas_dir: Path, examples: int, output_format: str) -> None:
    """Check the event contracts against every published version.

    Fails (exit 1, one line a problem) when a model changed without a new
    version, its current version is not published, an older version has no
    upcaster to the next, or an upcaster turns a generated document of one
    version into one the next refuses. Needs the `check` extra (exit 2
    without it)."""
    try:
        report = check_compatibility(schemas_dir, examples=examples)
    except CheckUnavailable as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if output_format == "json":
        problems = [
            {"type": p.type, "version": p.version, "reason": p.reason} for p in report.problems
        ]
        click.echo(json.dumps({"ok": report.ok, "problems": problems}))
    elif report.ok:
        click.echo(f"ok: {report.summary()}")
    else:
        for problem in report.problems:
            click.echo(str(problem))
    if not report.ok:
        raise click.exceptions.Exit(EXIT_REJECTED)
