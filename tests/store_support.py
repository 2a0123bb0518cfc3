"""Store faults the tests cause for real."""

from __future__ import annotations

import psycopg

from ledger.config import parse_database_url


def refuse_on_insert(pg_url: str, event_id: str, errcode: str) -> None:
    """A trigger that makes PostgreSQL refuse one row: a store error we cause for real."""
    schema = pg_url.rsplit("schema=", 1)[1]
    with psycopg.connect(parse_database_url(pg_url).conninfo(), autocommit=True) as conn:
        conn.execute(
            f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$ '
            "BEGIN IF NEW.event_id = '" + event_id + "' THEN "
            f"RAISE EXCEPTION 'value refused by policy' USING ERRCODE = '{errcode}'; "
            "END IF; RETURN NEW; END $$"
        )
        conn.execute(
            f'CREATE TRIGGER refuse BEFORE INSERT ON "{schema}".ledger_events '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
        )
