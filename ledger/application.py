"""The ledger as an eventsourcing Application: storage, mapper and repository."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    OperationalError,
    PersistenceError,
)

from ledger.config import DatabaseURL
from ledger.db import DatabaseUnavailable
from ledger.domain import Customer, CustomerSnapshot, customer_stream_id
from ledger.keystore import Keyring
from ledger.mapper import LedgerMapper
from ledger.stores.base import LedgerRecorder

# A customer's state is snapshotted every this many events, so loading a busy
# customer replays at most this many events.
SNAPSHOT_INTERVAL = 500


class LedgerApplication(Application[UUID]):
    name = "ledger"
    is_snapshotting_enabled = True

    def __init__(self, url: DatabaseURL, *, create_tables: bool | None = None) -> None:
        self.url = url
        env = url.library_env()
        if create_tables is not None:
            env["CREATE_TABLE"] = "y" if create_tables else "n"
        try:
            super().__init__(env=env)
        except (OperationalError, PersistenceError, OSError) as exc:
            raise DatabaseUnavailable(
                f"cannot open database {url.display()}: {first_line(exc)}"
            ) from exc

    def construct_mapper(self) -> Mapper[UUID]:
        # The transcoder is unused: the mapper writes pydantic JSON itself.
        mapper = LedgerMapper(
            transcoder=JSONTranscoder(),
            compressor=self.factory.compressor(),
            cipher=self.factory.cipher(),
        )
        mapper.keyring = Keyring.for_url(self.url)
        return mapper

    @property
    def ledger_recorder(self) -> LedgerRecorder:
        return cast(LedgerRecorder, self.recorder)

    def customer(self, customer_id: str) -> Customer:
        """The customer's aggregate; a new, not-yet-existing one if never created."""
        stream_id = customer_stream_id(customer_id)
        try:
            return cast(Customer, self.repository.get(stream_id))
        except AggregateNotFoundError:
            return Customer(id=stream_id, customer_id=customer_id)

    def snapshot_if_due(self, customer: Customer, previous_version: int) -> None:
        """Snapshot a customer whose version crossed a multiple of the interval."""
        if customer.version // SNAPSHOT_INTERVAL > previous_version // SNAPSHOT_INTERVAL:
            assert self.snapshots is not None
            self.snapshots.put([CustomerSnapshot.take(customer, datetime.now(UTC))])


def first_line(exc: BaseException) -> str:
    """An exception as one line for the user (drivers often add SQL context lines)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
