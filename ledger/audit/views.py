"""Audit views on PostgreSQL: the events table with its stored JSON decoded.

An auditor with only SELECT (see ledger.audit.grants) can query these with
psql or a BI tool, no ledger install needed:

- `ledger_audit_events`: one row per stored event: position, event_id, type,
  customer_id, subject, stream, occurred_at / recorded_at (timestamptz),
  actor_kind / actor_id / actor_name, source, data (jsonb), chain_hash;
- `ledger_audit_changes`: one row per field change of the `*.changed` /
  `*.edited` events: the event's columns plus field, old, new (jsonb).

They are plain views over `ledger_events`: a filter on `subject` or `position`
reaches the table's indexes, and nothing is copied, so they cannot drift from
the ledger. The decoding happens at query time; a row whose stored payload is
not valid JSON makes a query over it fail (`ledger audit verify` pinpoints it).
"""

from __future__ import annotations

from ledger.db import Connection
from ledger.stores.layout import EVENTS_TABLE

AUDIT_VIEWS = ("ledger_audit_events", "ledger_audit_changes")

_EVENTS_VIEW = f"""
CREATE OR REPLACE VIEW ledger_audit_events AS
SELECT e.notification_id AS position,
       e.event_id,
       e.topic AS type,
       e.customer_id,
       e.subject,
       e.originator_id AS stream_id,
       e.originator_version AS stream_version,
       (j.doc ->> 'occurred_at')::timestamptz AS occurred_at,
       (j.doc ->> 'recorded_at')::timestamptz AS recorded_at,
       j.doc -> 'actor' ->> 'kind' AS actor_kind,
       j.doc -> 'actor' ->> 'id' AS actor_id,
       j.doc -> 'actor' ->> 'name' AS actor_name,
       j.doc ->> 'source' AS source,
       j.doc -> 'data' AS data,
       e.chain_hash
FROM {EVENTS_TABLE} e
CROSS JOIN LATERAL (SELECT convert_from(e.state, 'UTF8')::jsonb AS doc) j
"""

_CHANGES_VIEW = """
CREATE OR REPLACE VIEW ledger_audit_changes AS
SELECT a.position, a.event_id, a.type, a.customer_id, a.subject,
       a.occurred_at, a.recorded_at, a.actor_kind, a.actor_id, a.actor_name, a.source,
       c.change ->> 'field' AS field,
       c.change -> 'old' AS old,
       c.change -> 'new' AS new
FROM ledger_audit_events a
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(a.data -> 'changes') = 'array' THEN a.data -> 'changes'
         ELSE '[]'::jsonb END
) AS c(change)
"""


def ensure_audit_views(conn: Connection) -> None:
    """Create or refresh the views (idempotent). PostgreSQL only."""
    if conn.kind != "postgresql":
        raise ValueError("the audit views are PostgreSQL only")
    with conn.schema_transaction():
        conn.execute(_EVENTS_VIEW)
        conn.execute(_CHANGES_VIEW)
