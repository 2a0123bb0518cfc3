"""`ledger db grant-auditor`: a PostgreSQL role that can read the ledger and change nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from tests.audit_support import customer_story, run
from tests.conftest import _pg_admin
from tests.factories import append_ok as append


@pytest.fixture
def role() -> Iterator[str]:
    """A throwaway LOGIN role, as a DBA would create for an auditor."""
    name = f"auditor_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'audit-secret'")
    yield name
    with _pg_admin() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


@pytest.fixture
def ledger_pg(pg_url: str) -> str:
    app = LedgerApplication(parse_database_url(pg_url))
    append(app, customer_story())
    app.close()
    return pg_url


def _as(url: str, role: str) -> str:
    """The same database and schema, connecting as `role`."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:audit-secret@{host}"))


def _granted(url: str, role: str) -> None:
    result = run(url, "db", "grant-auditor", role)
    assert result.exit_code == 0, result.output
    schema = parse_database_url(url).schema
    assert result.stdout.startswith(
        f"role {role} can read ledger_events, ledger_audit_events, ledger_audit_changes "
        f"in schema {schema}"
    )


def test_the_auditor_reads_the_ledger_through_the_cli(ledger_pg: str, role: str) -> None:
    _granted(ledger_pg, role)
    auditor = _as(ledger_pg, role)
    verified = run(auditor, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("intact up to position 13, head ")
    history = run(auditor, "audit", "history", "--order", "o-1", "--format", "ndjson")
    assert history.exit_code == 0, history.output
    assert len(history.stdout.splitlines()) == 3
    assert run(auditor, "audit", "anchor").stdout.startswith("13:")


def test_the_auditor_queries_the_decoded_views(ledger_pg: str, role: str) -> None:
    _granted(ledger_pg, role)
    db = parse_database_url(_as(ledger_pg, role))
    with psycopg.connect(db.conninfo(), options=f"-c search_path={db.schema}") as conn:
        events = conn.execute(
            "SELECT position, type, actor_id, occurred_at, data->>'status' "
            "FROM ledger_audit_events WHERE subject = 'order:o-1' ORDER BY position"
        ).fetchall()
        changes = conn.execute(
            "SELECT position, field, old, new, actor_name FROM ledger_audit_changes "
            "WHERE subject = 'order:o-1' ORDER BY position, field"
        ).fetchall()
    assert [(e[0], e[1], e[2]) for e in events] == [
        (3, "order.created", "u-1"),
        (5, "order.changed", "u-2"),
        (13, "order.changed", "u-1"),
    ]
    assert events[0][3].isoformat() == "2026-10-01T07:00:00+00:00"
    assert events[0][4] == "new"
    assert changes == [
        (5, "status", "new", "paid", "Ivan"),
        (5, "total", "10.00", "12.50", "Ivan"),
        (13, "status", "paid", "shipped", "Maria"),
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO ledger_events (notification_id, originator_id, originator_version, "
        "chain_hash) VALUES (99, gen_random_uuid(), 1, 'x')",
        "UPDATE ledger_events SET topic = 'x'",
        "DELETE FROM ledger_events",
        "TRUNCATE ledger_events",
        "ALTER TABLE ledger_events DISABLE TRIGGER ALL",
        "DROP TABLE ledger_events",
        "CREATE TABLE ledger_events_copy (x int)",
    ],
)
def test_the_auditor_cannot_change_anything(ledger_pg: str, role: str, statement: str) -> None:
    _granted(ledger_pg, role)
    db = parse_database_url(_as(ledger_pg, role))
    with (
        psycopg.connect(db.conninfo(), options=f"-c search_path={db.schema}") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied|must be"),
    ):
        conn.execute(statement)
    # The refusal came from privileges, before any trigger: nothing changed either way.
    assert run(ledger_pg, "audit", "verify").stdout.startswith("intact up to position 13")


def test_granting_twice_is_harmless(ledger_pg: str, role: str) -> None:
    _granted(ledger_pg, role)
    _granted(ledger_pg, role)
    assert run(_as(ledger_pg, role), "audit", "verify").exit_code == 0


def test_a_role_that_can_write_through_another_role_is_refused(ledger_pg: str, role: str) -> None:
    writer = f"writer_{uuid.uuid4().hex[:8]}"
    schema = parse_database_url(ledger_pg).schema
    with _pg_admin() as conn:
        conn.execute(f"CREATE ROLE {writer}")
        conn.execute(f'GRANT INSERT ON "{schema}".ledger_events TO {writer}')
        conn.execute(f"GRANT {writer} TO {role}")
    try:
        result = run(ledger_pg, "db", "grant-auditor", role)
        assert result.exit_code == 2
        assert f"role {role!r} can still INSERT {schema}.ledger_events" in result.stderr
    finally:
        with _pg_admin() as conn:
            conn.execute(f"DROP OWNED BY {writer}")
            conn.execute(f"DROP ROLE {writer}")


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("no_such_role_x", "role 'no_such_role_x' does not exist; create it first"),
        ("postgres", "is a superuser"),
    ],
)
def test_unknown_and_superuser_roles_are_refused(ledger_pg: str, who: str, message: str) -> None:
    result = run(ledger_pg, "db", "grant-auditor", who)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.splitlines()) == 1


def test_sqlite_has_no_roles(sqlite_url: str) -> None:
    LedgerApplication(parse_database_url(sqlite_url)).close()
    result = run(sqlite_url, "db", "grant-auditor", "someone")
    assert result.exit_code == 2
    assert "grant-auditor needs PostgreSQL" in result.stderr
