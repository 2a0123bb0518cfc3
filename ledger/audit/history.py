"""The full change history of one subject, straight from the events table.

No projection is involved: every row comes from `ledger_events` and its stored
JSON, so an auditor sees exactly what was written.

How a subject's events are found without scanning the table:
- an order, task, dialogue or email: the `subject` column (`order:ID`, ...) is
  indexed `(subject, notification_id)` on both stores, so `subject = ? AND
  notification_id > ? ORDER BY notification_id` is one index range scan that is
  already in position order;
- a customer: every event of a customer is in its own stream
  (`originator_id = customer_stream_id(customer_id)`), whose primary key /
  unique index is `(originator_id, originator_version)`. The query walks that
  index by version: a stream's version N+1 can only be written once version N
  is visible to the writer, and positions are `max + 1` under the write lock,
  so version order is position order. (Ordering by `notification_id` instead
  would sort the customer's whole stream for every page.)
Both read keyset pages of `PAGE_SIZE` rows, so memory stays constant however
long the history, and latency for a short history does not depend on the
table's size. `test_audit_history.py` checks the plans use these indexes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from ledger.audit.common import AuditError, fetch_page
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.events import EVENT_TYPES
from ledger.keystore.errors import KeystoreError
from ledger.keystore.keyring import Keyring
from ledger.personal import TamperedValue, reveal_json
from ledger.stores.layout import EVENTS_TABLE
from ledger.times import BadTime, parse_user_time
from ledger.upcasting import VersionError, upcast_document

PAGE_SIZE = 1000

SELECTOR_KINDS = ("customer", "order", "task", "dialog", "email")

TimeField = Literal["occurred", "recorded"]

_decode = json.JSONDecoder().decode

_COLUMNS = (
    "notification_id, originator_version, topic, state, event_id, customer_id, subject, chain_hash"
)


@dataclass(frozen=True)
class Selector:
    """Whose history: a customer, or one order, task, dialogue or email."""

    kind: str
    id: str

    def __post_init__(self) -> None:
        if self.kind not in SELECTOR_KINDS:
            raise AuditError(f"unknown subject kind {self.kind!r}")
        if not self.id:
            raise AuditError.naming(f"{{{self.kind}}} needs a non-empty id", self.kind)

    @property
    def subject(self) -> str | None:
        """The `subject` column's value; None for a customer (found by stream)."""
        return None if self.kind == "customer" else f"{self.kind}:{self.id}"

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


def selector_from_options(options: dict[str, str | None]) -> Selector:
    """Exactly one of the customer, order, task, dialog and email parameters
    (`options` maps each to its value or None), as a Selector."""
    given = [(kind, value) for kind, value in options.items() if value is not None]
    if len(given) != 1:
        names = ", ".join(f"{{{k}}}" for k in SELECTOR_KINDS)
        which = (
            "none was given" if not given else "got " + " and ".join(f"{{{k}}}" for k, _ in given)
        )
        named = dict.fromkeys([*SELECTOR_KINDS, *(k for k, _ in given)])
        raise AuditError.naming(f"give exactly one of {names}; {which}", *named)
    kind, value = given[0]
    assert value is not None
    return Selector(kind, value)


@dataclass(frozen=True)
class HistoryFilter:
    """`since` is inclusive, `until` exclusive; both compare `time_field`."""

    since: datetime | None = None
    until: datetime | None = None
    time_field: TimeField = "occurred"
    actor_id: str | None = None
    types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in EVENT_TYPES]
        if unknown:
            raise AuditError(
                f"unknown event type {unknown[0]!r}; known types: {', '.join(EVENT_TYPES)}"
            )
        if self.since and self.until and self.since >= self.until:
            raise AuditError.naming("{since} must be before {until}", "since", "until")

    @property
    def active(self) -> bool:
        return bool(self.since or self.until or self.actor_id is not None or self.types)

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "time": f"{self.time_field}_at",
            "actor": self.actor_id,
            "types": list(self.types),
        }


def parse_time(text: str, option: str) -> datetime:
    """A time given to `option`, or AuditError saying why not."""
    try:
        return parse_user_time(text)
    except BadTime as exc:
        raise AuditError(f"bad {option} {exc}") from None


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ for
# every field, a third of the cost of building one in a long history.
@dataclass(slots=True)
class AuditEvent:
    """One stored event as the audit trail shows it.

    Envelope fields come from the stored JSON as written (times keep the
    producer's offset); position, stream version, subject and chain hash come
    from the row's columns."""

    position: int
    event_id: str | None
    type: str
    occurred_at: str | None
    recorded_at: str | None
    actor_kind: str | None
    actor_id: str | None
    actor_name: str | None
    source: str | None
    customer_id: str | None
    subject: str | None
    stream_version: int
    changes: list[dict[str, Any]]
    data: Any
    chain_hash: str
    error: str | None = None
    # The version of its type the event is stored in; `data` is shown in the
    # current version (ledger.upcasting).
    schema_version: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "position": self.position,
            "event_id": self.event_id,
            "type": self.type,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "actor": {"kind": self.actor_kind, "id": self.actor_id, "name": self.actor_name},
            "source": self.source,
            "customer_id": self.customer_id,
            "subject": self.subject,
            "stream_version": self.stream_version,
            "schema_version": self.schema_version,
            "changes": self.changes,
            "data": self.data,
            "chain_hash": self.chain_hash,
        }
        if self.error:
            out["error"] = self.error
        return out


def history_statement(
    conn: Connection, selector: Selector, filters: HistoryFilter, after: int | None = None
) -> tuple[str, list[Any]]:
    """The SQL and parameters of one page, after keyset value `after`.

    The keyset is the position for a subject and the stream version for a
    customer (see the module docstring)."""
    params: list[Any] = []
    if selector.subject is not None:
        where = "subject = ? AND notification_id > ?"
        params += [selector.subject, after if after is not None else -(2**63)]
        order = "notification_id"
    else:
        stream_id = customer_stream_id(selector.id)
        # SQLite stores stream ids as 32-digit hex text, PostgreSQL as uuid.
        stream: UUID | str = stream_id.hex if conn.kind == "sqlite" else stream_id
        where = "originator_id = ? AND originator_version > ?"
        params += [stream, after if after is not None else -(2**63)]
        order = "originator_version"
    if filters.types:
        where += f" AND topic IN ({', '.join('?' * len(filters.types))})"
        params += list(filters.types)
    statement = f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} WHERE {where} ORDER BY {order} LIMIT ?"
    return statement, params


def iter_history(
    conn: Connection,
    selector: Selector,
    filters: HistoryFilter | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[AuditEvent]:
    """Every stored event of `selector` that passes `filters`, in position order."""
    filters = filters or HistoryFilter()
    keyset_index = 0 if selector.subject is not None else 1
    after: int | None = None
    ring = auditor_keyring(conn)
    while True:
        statement, params = history_statement(conn, selector, filters, after)
        rows = fetch_page(conn, statement, [*params, page_size])
        for row in rows:
            event = _audit_event(row, ring)
            if _passes(event, filters):
                yield event
        if len(rows) < page_size:
            return
        after = int(rows[-1][keyset_index])


def _passes(event: AuditEvent, f: HistoryFilter) -> bool:
    if f.actor_id is not None and event.actor_id != f.actor_id:
        return False
    if f.since is None and f.until is None:
        return True
    text = event.occurred_at if f.time_field == "occurred" else event.recorded_at
    try:
        at = datetime.fromisoformat(text) if text else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        # No readable time: keep it visible rather than hide it from an auditor.
        return True
    if f.since is not None and at < f.since:
        return False
    return not (f.until is not None and at >= f.until)


def auditor_keyring(conn: Connection) -> Keyring | None:
    """The ledger's keys if this reader can use them. An auditor's read-only role
    (docs/audit.md) may have neither the key table nor the master key: it sees the
    history with personal values shown as "[encrypted]", never their ciphertext."""
    try:
        return Keyring.for_url(conn.url)
    except KeystoreError:
        raise
    except Exception:  # no rights on the key table: the structure is still evidence
        return None


def _audit_event(row: Sequence[Any], ring: Keyring | None = None) -> AuditEvent:
    position, version, topic, state, event_id, customer_id, subject, chain = row
    tampered: str | None = None
    try:
        envelope = _decode(bytes(state).decode("utf-8"))
        if not isinstance(envelope, dict):
            raise ValueError("not an object")
        try:
            envelope = reveal_json(envelope, ring)
        except TamperedValue as exc:
            tampered = str(exc)
            envelope["data"] = None
    except (ValueError, TypeError):
        # A stored payload that is not JSON is shown, not skipped: it is
        # evidence. `ledger audit verify` says whether it was tampered with.
        return AuditEvent(
            position=position,
            event_id=event_id,
            type=topic,
            occurred_at=None,
            recorded_at=None,
            actor_kind=None,
            actor_id=None,
            actor_name=None,
            source=None,
            customer_id=customer_id,
            subject=subject,
            stream_version=version,
            changes=[],
            data=None,
            chain_hash=chain,
            error="the stored payload is not a JSON object",
        )
    stored_version = envelope.get("schema_version")
    try:
        envelope = upcast_document(envelope)
    except VersionError as exc:
        tampered = tampered or str(exc)
    actor = envelope.get("actor")
    if not isinstance(actor, dict):
        actor = {}
    data = envelope.get("data")
    changes = data.get("changes") if isinstance(data, dict) else None
    return AuditEvent(
        position=position,
        event_id=envelope.get("event_id", event_id),
        type=envelope.get("type", topic),
        occurred_at=envelope.get("occurred_at"),
        recorded_at=envelope.get("recorded_at"),
        actor_kind=actor.get("kind"),
        actor_id=actor.get("id"),
        actor_name=actor.get("name"),
        source=envelope.get("source"),
        customer_id=envelope.get("customer_id", customer_id),
        subject=subject,
        stream_version=version,
        changes=changes if isinstance(changes, list) else [],
        data=data,
        chain_hash=chain,
        error=tampered,
        schema_version=stored_version if isinstance(stored_version, int) else None,
    )
