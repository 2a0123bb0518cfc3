"""What every read model shares: the decoded event it is fed, and its contract.

A projection is stateless: `apply` turns one batch of events into writes on
its tables, inside the caller's transaction, which also moves the projection's
tracking position. The same code fills the live tables and a rebuild's shadow
tables; `Tables` says which.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ledger.db import Connection
from ledger.events import Payload, RecordedEvent, parse_recorded_json
from ledger.reading import StoredRow
from projections.clock import micros
from projections.tables import TableSpec


@dataclass(frozen=True, slots=True)
class Envelope:
    """One stored event, decoded once and shared by every projection of a batch."""

    position: int
    event: RecordedEvent
    raw: bytes
    occurred_us: int

    @classmethod
    def decode(cls, row: StoredRow) -> Envelope:
        # pydantic's JSON validation is as fast as json.loads here, and gives
        # `summarize` the typed payload it expects.
        event = parse_recorded_json(row.state)
        return cls(row.position, event, row.state, micros(event.occurred_at))


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


class Projection(ABC):
    name: ClassVar[str]
    # Bumped when the table layout or the meaning of rows changes: stored
    # rows of an older version need a rebuild before the code may touch them.
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[TableSpec, ...]]
    # The payload classes this projection reads; events of other types only
    # advance its position. `types` are their names, for filtering stored rows
    # before they are decoded.
    payloads: ClassVar[tuple[type[Payload], ...]]
    types: ClassVar[frozenset[str]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "payloads" in cls.__dict__:
            cls.types = frozenset(p.type_name for p in cls.payloads)

    @abstractmethod
    def apply(self, db: Connection, tables: Tables, events: Sequence[Envelope]) -> None:
        """Write the effect of `events` (position order, all of `types`)."""
