"""`ledger serve`: the HTTP API; `ledger access new-key`: access keys for it.

The HTTP stack (FastAPI, uvicorn) is imported inside the commands, so every
other command starts as fast as before.
"""

from __future__ import annotations

import ipaddress
import os

import click

from api.scopes import SCOPES
from cli.context import EXIT_USAGE, FORMAT_OPTION, CliError, cli_context, emit_json
from ledger.config import ConfigError
from ledger.environment import (
    ACCESS_FILE_ENV,
    APPEND_WRITER_ENV,
    APPEND_WRITERS,
    CORS_ENV,
    DATABASE_URL_ENV,
    DEFAULT_APPEND_WRITER,
    DEFAULT_REGION_ENV,
    MAX_BODY_ENV,
    MAX_ITEMS_ENV,
    PAGE_USER_ENV,
    PEOPLE_FILE_ENV,
    PROTECT_METRICS_ENV,
    RIGHTS_POLICY_ENV,
    TENANT_ENV,
    TENANTS_URL_ENV,
)
from services.errors import ServiceError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine (`localhost` or a
    loopback address), where `ledger serve` may run without an access file."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--access",
    "access_option",
    metavar="PATH",
    help=f"Access file (TOML) [env {ACCESS_FILE_ENV}]. Without one the API is open, "
    "and then it listens on loopback only.",
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--cors-origin",
    "cors",
    multiple=True,
    metavar="ORIGIN",
    help=f"Origin a browser may call the API from (repeatable) [env {CORS_ENV}, comma-separated].",
)
@click.option(
    "--max-body",
    type=click.IntRange(1024, 1 << 30),
    default=16 * 1024 * 1024,
    show_default=True,
    help="Largest request body, in bytes.",
)
@click.option(
    "--max-items",
    type=click.IntRange(1, 1_000_000),
    default=10_000,
    show_default=True,
    help="Most events in one POST /v1/events (413 past it).",
)
@click.option("--protect-metrics", is_flag=True, help="/metrics needs a key with the ops scope.")
@click.option(
    "--user",
    "page_user",
    metavar="ID",
    help=f"Without an access file: the user who acts from the card page [env {PAGE_USER_ENV}; "
    "default local].",
)
@click.option(
    "--append-writer",
    type=click.Choice(APPEND_WRITERS),
    help=f"Where one-event appends are stored [env {APPEND_WRITER_ENV}; "
    f"default {DEFAULT_APPEND_WRITER}]: "
    "a thread of the server, or a process of its own, which stores more of them a second "
    "on a machine of several cores and costs an interpreter more (docs/http.md).",
)
def serve(
    host: str,
    port: int,
    access_option: str | None,
    workers: int,
    cors: tuple[str, ...],
    max_body: int,
    max_items: int,
    protect_metrics: bool,
    page_user: str | None,
    append_writer: str | None,
) -> None:
    """Serve the HTTP API (see docs/http.md): append, tabs, task actions, audit,
    projection status, health and metrics. SIGTERM finishes requests in flight.
    Given a tenant directory (`ledger --tenants-db URL serve`) and no --db nor
    --tenant, serves every tenant of it (docs/http.md, Tenants)."""
    ctx = cli_context()
    access = access_option or os.environ.get(ACCESS_FILE_ENV) or None
    if access is None and not is_loopback(host):
        raise CliError(
            f"refusing to listen on {host} without an access file: pass --access PATH "
            f"(or {ACCESS_FILE_ENV}), or listen on 127.0.0.1",
            EXIT_USAGE,
        )
    from api.access import load_access
    from api.serve import run
    from services.tenants import directory, directory_ready, serving_directory

    tenants_url = serving_directory(ctx.db_option, ctx.tenant_option, ctx.tenants_option)
    if access is not None:
        try:
            keys = load_access(access)
        except ConfigError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
        if not keys.keys:
            click.echo(f"warning: {access} has no keys; every request will get 401", err=True)
        homeless = [k.name for k in keys.keys if k.tenant is None and not k.all_tenants]
        if tenants_url is not None and homeless:
            raise CliError(
                f"{access}: on a server of many tenants every key is of one tenant "
                f'(tenant = "ID") or of all (all_tenants = true); not so: {", ".join(homeless)}',
                EXIT_USAGE,
            )
    # The workers read their configuration from the environment (see api.serve).
    if tenants_url is not None:
        # Every tenant of the directory; each one's store is found per request.
        try:
            directory_ready(directory(tenants_url))  # a bad or unreachable one stops us here
        except ServiceError as exc:
            raise CliError(exc.message, EXIT_USAGE) from exc
        os.environ[TENANTS_URL_ENV] = tenants_url
        serving = f"every tenant of {directory(tenants_url).url.display()}"
    else:
        _ = ctx.url  # a bad URL (or an unknown tenant) stops us here, with one line
        serving = ctx.url.display()
        if ctx.tenant_option:  # one tenant, served like a single store
            os.environ[TENANT_ENV] = ctx.tenant_option
        if ctx.tenants_option:
            os.environ[TENANTS_URL_ENV] = ctx.tenants_option
    if ctx.db_option:
        os.environ[DATABASE_URL_ENV] = ctx.db_option
    if ctx.rights_option:
        os.environ[RIGHTS_POLICY_ENV] = ctx.rights_option
    ctx.policy()  # a bad rights file stops us here, with one line
    if ctx.people_option:
        os.environ[PEOPLE_FILE_ENV] = os.path.abspath(ctx.people_option)
    ctx.people()  # and so does a bad people file
    if page_user is not None:
        if not page_user.strip():
            raise CliError("--user: give a user id", EXIT_USAGE)
        os.environ[PAGE_USER_ENV] = page_user
    if access is not None:
        os.environ[ACCESS_FILE_ENV] = os.path.abspath(access)
    else:
        os.environ.pop(ACCESS_FILE_ENV, None)
    if cors:
        os.environ[CORS_ENV] = ",".join(cors)
    os.environ[MAX_BODY_ENV] = str(max_body)
    os.environ[MAX_ITEMS_ENV] = str(max_items)
    os.environ[PROTECT_METRICS_ENV] = "1" if protect_metrics else "0"
    writer = append_writer or os.environ.get(APPEND_WRITER_ENV) or DEFAULT_APPEND_WRITER
    if writer not in APPEND_WRITERS:
        raise CliError(
            f"{APPEND_WRITER_ENV}={writer!r}: give one of {', '.join(APPEND_WRITERS)}", EXIT_USAGE
        )
    os.environ[APPEND_WRITER_ENV] = writer
    os.environ[DEFAULT_REGION_ENV] = _region()  # `ledger --region`, checked
    click.echo(
        f"serving {serving} on http://{host}:{port} "
        f"({'access keys from ' + access if access else 'open: no access file'})",
        err=True,
    )
    run(host, port, workers)


@click.group()
def access() -> None:
    """Access keys for `ledger serve`."""


@access.command(name="new-key")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(list(SCOPES)),
    help="What the key may do (repeatable).",
)
@click.option("--user", metavar="ID", help="The user the key acts as for task actions.")
@click.option(
    "--access",
    "access_option",
    metavar="PATH",
    help=f"Access file to add the key to [env {ACCESS_FILE_ENV}; default ./access.toml].",
)
@click.option(
    "--tenant",
    "key_tenant",
    metavar="ID",
    help="A key of this tenant only (a server of many tenants serves it that tenant's store).",
)
@click.option(
    "--all-tenants",
    is_flag=True,
    help="An operator key of every tenant: each request names its tenant (X-Ledger-Tenant).",
)
@FORMAT_OPTION
def new_key(
    name: str,
    scopes: tuple[str, ...],
    user: str | None,
    access_option: str | None,
    key_tenant: str | None,
    all_tenants: bool,
    output_format: str,
) -> None:
    """Make a fresh random token for NAME and add its entry (its SHA-256, never
    the token) to the access file. The token is printed once: store it now."""
    from api.access import new_key as make_key

    path = access_option or os.environ.get(ACCESS_FILE_ENV) or "access.toml"
    # `ledger --tenant ID access new-key` makes a key of that tenant too.
    key_tenant = key_tenant or cli_context().tenant_option
    try:
        made = make_key(path, name, list(scopes), user, tenant=key_tenant, all_tenants=all_tenants)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    if output_format == "json":
        emit_json({"name": name, "token": made.token, "access_file": path, "entry": made.entry})
        return
    click.echo(f"token for {name} (shown once): {made.token}")
    click.echo(f"added to {path}:")
    click.echo(made.entry, nl=False)


def _region() -> str:
    from services.errors import ServiceError
    from services.regions import region_in_use

    try:
        return region_in_use()
    except ServiceError as exc:
        raise CliError(exc.message, EXIT_USAGE) from None
