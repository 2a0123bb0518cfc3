"""The events table's name, columns and notification channel.

Kept apart from the recorders (and free of the eventsourcing library) because
every reader needs these names: a tab read imports this, not the write path.
"""

from __future__ import annotations

EVENTS_TABLE = "ledger_events"
# The channel writers NOTIFY in the transaction of every insert: the library names it
# after the events table. Followers LISTEN on it (`ledger.waiting.ListenWaiter`).
NOTIFY_CHANNEL = EVENTS_TABLE

# Columns in insert order. `event_id`, `customer_id` and `subject` are copies of
# values inside `state`, kept as columns so idempotency, id uniqueness and the
# audit trail's subject lookups are index scans, not payload scans.
EVENT_COLUMNS = (
    "notification_id",
    "originator_id",
    "originator_version",
    "topic",
    "state",
    "event_id",
    "customer_id",
    "subject",
    "creates_subject",
    "chain_hash",
)
