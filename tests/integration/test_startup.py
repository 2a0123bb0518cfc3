"""`ledger tab` and `ledger --help` import only what they use: commands load lazily."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cli.main import COMMANDS, load_command
from tests.factories import append_to_url, event

# Runs the real `ledger` entry point, then reports every module it imported.
_PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
from cli.main import main
sys.argv = ["ledger", *sys.argv[1:]]
main()
"""

# What a tab read of current read models never needs: the Kafka client and relay,
# the HTTP stack and card page, metrics, the rebuild machinery, the append engine
# with the eventsourcing application, the projection runner, psycopg on SQLite, the
# audit trail, the tabs' pydantic models (it prints the rows they validate), and
# the event contracts with pydantic itself (the read models hold plain rows).
NOT_ON_A_TAB_READ = (
    "kafka",
    "lz4",
    "relay",
    "consumers",
    "api",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "jinja2",
    "prometheus_client",
    "projections.rebuild",
    "projections.runner",
    "projections.targets",
    "projections.following",
    "projections.status",
    "projections.models",
    "services.metrics",
    "ledger.audit",
    "ledger.appending",
    "ledger.application",
    "ledger.domain",
    "ledger.mapper",
    "ledger.waiting",
    "eventsourcing",
    "ledger.events",
    "pydantic",
    "pydantic_core",
    "psycopg",
)
# `--help` lists commands from their summaries: no command module, no store.
NOT_FOR_HELP = (
    *NOT_ON_A_TAB_READ,
    "cli.tab",
    "cli.append",
    "cli.context",
    "services",
)


def _imported(*args: str, db: str | None = None) -> tuple[str, set[str]]:
    command = [sys.executable, "-c", _PROBE, *(["--db", db] if db else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stderr.strip().splitlines()[-1])
    return result.stdout, set(modules)


def _offending(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_a_tab_read_imports_only_what_reading_needs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    append_to_url(url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    # The first read has an event to apply: it runs the projection runner.
    out, modules = _imported("tab", "c1", "card", db=url)
    assert "c1: card (1 item)" in out
    assert "projections.runner" in modules
    # Now the read model is current: the read only reads (and decrypts the name).
    out, modules = _imported("tab", "c1", "card", db=url)
    assert "c1: card (1 item)" in out and "Ann" in out
    assert "cli.tab" in modules and "projections.card" in modules
    assert "ledger.keystore.keyring" in modules
    assert _offending(modules, NOT_ON_A_TAB_READ) == []
    # An event stored since is still shown: the read catches up first.
    change = {"changes": [{"field": "name", "old": "Ann", "new": "Bea"}]}
    append_to_url(url, [event("customer.card_changed", "c1", change)])
    out, modules = _imported("tab", "c1", "card", db=url)
    assert "c1: card (2 items)" in out and "Bea" in out


def test_help_imports_no_command(tmp_path: Path) -> None:
    out, modules = _imported("--help")
    assert "tab          Show one TAB of CUSTOMER_ID's interactions" in out
    assert _offending(modules, NOT_FOR_HELP) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_summary_is_its_commands_own(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    summary = COMMANDS[name][2]
    for width in (30, 45, 80, 1000):
        stub = click.Command(name, help=summary)
        assert stub.get_short_help_str(width) == command.get_short_help_str(width), width


@pytest.mark.parametrize(
    "args",
    [
        ("append", "{events}"),
        ("audit", "history", "--customer", "c1"),
        ("audit", "verify"),
        ("projections", "status"),
        ("customers", "duplicates", "c1"),
        ("relay", "status"),
        ("relay", "reset", "--to", "0", "--yes"),
    ],
    ids=[
        "append",
        "audit history",
        "audit verify",
        "projections status",
        "duplicates",
        "relay status",
        "relay reset",
    ],
)
def test_commands_on_sqlite_never_load_the_postgresql_driver(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """psycopg costs about 0.2 s of a command's start, and a SQLite store never
    needs it."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    append_to_url(url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps(event("note.added", "c1", {"note_id": "n1", "text": "x"})) + "\n")
    _, modules = _imported(*(a.format(events=events) for a in args), db=url)
    assert _offending(modules, ("psycopg",)) == []


# Runs the real `ledger` entry point, counting the PostgreSQL connections it opens
# (psycopg.connect and the pools' Connection.connect are one method).
_COUNTING_PROBE = """
import atexit, sys
import psycopg
opened = []
_connect = psycopg.Connection.connect.__func__
def connect(cls, *args, **kwargs):
    opened.append(1)
    return _connect(cls, *args, **kwargs)
psycopg.Connection.connect = classmethod(connect)
psycopg.connect = psycopg.Connection.connect
atexit.register(lambda: print(len(opened), file=sys.stderr))
from cli.main import main
sys.argv = ["ledger", *sys.argv[1:]]
main()
"""


def test_a_tab_read_on_postgresql_opens_two_connections(pg_url: str) -> None:
    """Each connection is a round trip more before the first row, and a server
    process: a read needs its own and the key table's, which also checks the
    store's format."""
    append_to_url(pg_url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    command = [sys.executable, "-c", _COUNTING_PROBE, "--db", pg_url, "tab", "c1", "card"]
    for _ in range(2):  # the first read brings the read model up to date
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert "Ann" in result.stdout
    assert int(result.stderr.strip().splitlines()[-1]) == 2
