"""`ledger schemas`: the JSON Schemas of the event contracts."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.catalogue_doc import render_catalogue
from ledger.schemas import write_schemas


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
    API's OpenAPI document (openapi.json), into OUT."""
    from api.app import openapi_json  # the HTTP stack, only for this command

    written = write_schemas(out_dir)
    (out_dir / "openapi.json").write_text(openapi_json())
    click.echo(f"wrote {len(written)} schemas and openapi.json to {out_dir}")


@schemas.command()
def catalogue() -> None:
    """Print the event catalogue as Markdown (committed as docs/events.md)."""
    click.echo(render_catalogue(), nl=False)
