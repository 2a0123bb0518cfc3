"""What every read model shares: the decoded event it is fed, and its contract.

A projection is stateless between batches of the live runner: its `Writer`
takes one batch's events into memory and `flush` writes them inside the
caller's transaction, which also moves the projection's tracking position. A
rebuild keeps one writer per projection across many batches and flushes them
all together at a checkpoint (projections.loading). The same code fills the
live tables and a rebuild's shadow tables; `Tables` says which.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from ledger.keystore.keyring import Keyring
from ledger.payloads import payload_classes
from ledger.personal import reveal_document
from ledger.reading import StoredRow
from ledger.upcasting import upcast_document
from projections.clock import iso, micros
from projections.tables import TableSpec

# The contracts are imported where events are checked or written, never by a tab
# read (which imports the read models' modules for their queries).
if TYPE_CHECKING:
    from ledger.events import Payload

    # (`Envelope` has a field named `type`, which hides the builtin in its body.)
    PayloadClass = type[Payload]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One stored event, decoded once to plain JSON values and shared by every
    projection of a batch. `occurred_at` is the text read models show (as
    pydantic writes it), `occurred_us` what they sort on; personal values in
    `data` are revealed."""

    position: int
    type: str
    event_id: str
    customer_id: str
    occurred_at: str
    occurred_us: int
    actor: dict[str, Any]
    data: dict[str, Any]

    @classmethod
    def of(cls, position: int, event_type: str, document: dict[str, Any]) -> Envelope:
        """The envelope of a stored document, its `data` in the current version of
        its type (ledger.upcasting)."""
        document = upcast_document(document)
        moment = datetime.fromisoformat(document["occurred_at"])
        return cls(
            position,
            event_type,
            document["event_id"],
            document["customer_id"],
            iso(moment),
            micros(moment),
            document["actor"],
            document["data"],
        )

    @classmethod
    def decode(cls, row: StoredRow) -> Envelope:
        """Checked against its type's contract first (ContractError, TamperedValue):
        the live runner stops a projection at an event that breaks it."""
        from pydantic_core import from_json

        from ledger.events import parse_recorded_json

        state = row.state
        parse_recorded_json(state)
        return cls.of(row.position, row.type, from_json(state))

    @classmethod
    def decode_stored(
        cls, position: int, event_type: str, stored: bytes, ring: Ciphers
    ) -> Envelope:
        """Unchecked: a stored row was validated and chained when it was appended."""
        return cls.of(position, event_type, reveal_document(stored, ring))

    def payload(self) -> PayloadClass:
        return payload_classes()[self.type]

    def subject_id(self) -> str | None:
        field = self.payload().subject_field
        return None if field is None else str(self.data[field])


class Tables:
    """Logical table name -> the physical table a batch writes to."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = dict(mapping)

    def __getitem__(self, logical: str) -> str:
        return self._mapping[logical]

    @classmethod
    def live(cls, specs: Sequence[TableSpec]) -> Tables:
        return cls({s.name: s.name for s in specs})

    @classmethod
    def shadow(cls, specs: Sequence[TableSpec]) -> Tables:
        return cls({s.name: s.shadow() for s in specs})


class Writer(ABC):
    """A projection's rows not yet written: `add` changes them in memory (it may
    read rows written before), `flush` writes them in the caller's transaction
    and forgets them."""

    @abstractmethod
    def add(self, events: Sequence[Envelope]) -> None:
        """Take in `events` (position order, all of the projection's types)."""

    @abstractmethod
    def flush(self) -> None: ...


class EveryEventType:
    """`types` of a projection that reads every event type: the catalogue's names,
    looked up when first asked for (a tab read imports projections, not contracts)."""

    def __get__(self, instance: object, owner: type | None = None) -> frozenset[str]:
        return _every_event_type()


@cache
def _every_event_type() -> frozenset[str]:
    return frozenset(payload_classes())


class Projection(ABC):
    """One read model: its name, layout version, tables and the event types it reads,
    and the `Writer` that turns those events into rows. Stateless: the same instance
    fills live and shadow tables."""

    name: ClassVar[str]
    # Bumped when the table layout or the meaning of rows changes: stored
    # rows of an older version need a rebuild before the code may touch them.
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[TableSpec, ...]]
    # The event types this projection reads (the catalogue's type names; a test
    # holds them to it); events of other types only advance its position, and
    # stored rows are filtered on these names before they are decoded.
    types: ClassVar[frozenset[str]]
    # Whether the card has a tab of this name that reads it (`projections.tabs`);
    # a read model for something else (the customer search, people's names)
    # says False.
    tab: ClassVar[bool] = True

    @abstractmethod
    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        """A fresh writer into `tables`, sealing personal cells with `keys`."""

    def apply(self, db: Connection, tables: Tables, events: Sequence[Envelope]) -> None:
        """Write the effect of `events` (position order, all of `types`)."""
        writer = self.writer(db, tables, Keyring.for_url(db.url))
        writer.add(events)
        writer.flush()
