"""Least privilege for auditors on PostgreSQL: read the events and the audit
views, nothing else.

The role is created by the DBA (it needs a password or certificate policy we
do not own); `grant_auditor` makes sure the views exist, resets the role's
privileges on the ledger's objects to SELECT only, then checks the result with
`has_table_privilege`, because a role can also write through membership of
another role or as an owner, which grants on the role itself cannot remove.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.audit.common import AuditError
from ledger.audit.views import AUDIT_VIEWS, ensure_audit_views
from ledger.db import Connection
from ledger.stores.layout import EVENTS_TABLE

WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


@dataclass(frozen=True)
class GrantReport:
    """What `grant_auditor` did: the role, where (database and schema), and what it may now read."""

    role: str
    schema: str
    database: str
    readable: tuple[str, ...]


def grant_auditor(conn: Connection, role: str) -> GrantReport:
    """Let the existing, non-superuser PostgreSQL role `role` read the events table and
    the audit views, and nothing else; AuditError on SQLite, which has no roles."""
    if conn.kind != "postgresql":
        raise AuditError(
            "grant-auditor needs PostgreSQL: SQLite has no roles; give auditors a copy "
            "of the database file, or file-system read access to it"
        )
    found = conn.fetchone("SELECT rolsuper FROM pg_roles WHERE rolname = ?", (role,))
    if found is None:
        raise AuditError(
            f"role {role!r} does not exist; create it first, e.g. "
            f"CREATE ROLE {sql_identifier(role)} LOGIN PASSWORD '...'"
        )
    if found[0]:
        raise AuditError(
            f"role {role!r} is a superuser, which bypasses every privilege: "
            "use a plain LOGIN role for auditors"
        )
    # Here, not at the top: the audit commands on SQLite never load the PostgreSQL driver.
    from psycopg import sql

    schema = conn.url.schema
    ensure_audit_views(conn)
    objects = (EVENTS_TABLE, *AUDIT_VIEWS)
    r = sql.Identifier(role)
    s = sql.Identifier(schema)
    targets = sql.SQL(", ").join(sql.Identifier(schema, name) for name in objects)
    with conn.transaction():
        raw = conn.raw
        raw.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(conn.url.dbname), r)
        )
        raw.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
        # Start from nothing so an earlier, wider grant does not survive.
        raw.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(targets, r))
        raw.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(targets, r))
    for name in objects:
        qualified = f"{_quote(schema)}.{_quote(name)}"
        for privilege in WRITE_PRIVILEGES:
            row = conn.fetchone("SELECT has_table_privilege(?, ?, ?)", (role, qualified, privilege))
            if row is not None and row[0]:
                raise AuditError(
                    f"role {role!r} can still {privilege} {schema}.{name} through a role it "
                    "belongs to or as an owner; an auditor role must not: give it a role of "
                    "its own"
                )
    return GrantReport(role=role, schema=schema, database=conn.url.dbname, readable=objects)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_identifier(name: str) -> str:
    """`name` quoted as an SQL identifier when it needs to be, for messages."""
    simple = name.isidentifier() and name.islower() and name.isascii()
    return name if simple else _quote(name)
