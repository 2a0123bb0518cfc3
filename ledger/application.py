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
    StoredEvent,
)

from ledger.config import DatabaseURL
from ledger.db import Queries
from ledger.domain import Customer, CustomerEvent, CustomerSnapshot, customer_stream_id
from ledger.errors import DatabaseUnavailable
from ledger.keystore.keyring import Keyring
from ledger.mapper import LedgerMapper
from ledger.printable import first_line as first_line  # re-exported: appending, runner
from ledger.reading import stream_after
from ledger.stores.base import LedgerRecorder

# A customer's state is snapshotted every this many events, so loading a busy
# customer replays at most this many events.
SNAPSHOT_INTERVAL = 500
# Events replayed per query when loading a customer, so a long stream loads in
# constant memory beyond the customer's own state.
_REPLAY_PAGE = 1000


class LedgerApplication(Application[UUID]):
    """The library's application over the ledger's store: customer aggregates, snapshots
    every SNAPSHOT_INTERVAL events, and the ledger's own mapper and recorder."""

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
    def ledger_mapper(self) -> LedgerMapper:
        return cast(LedgerMapper, self.mapper)

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

    def load_customer(self, store: Queries, customer_id: str) -> tuple[Customer, int]:
        """The customer's aggregate as `store` sees it, and the version of the
        snapshot it started from (0: none): its latest snapshot, then the events
        after it. Through a write session this includes the session's own rows
        before they commit, which the repository (its own connection) cannot see."""
        stream_id = customer_stream_id(customer_id)
        customer: Customer | None = None
        # Stream ids as in ledger.reading.stream_after (hex text; a uuid on PostgreSQL).
        rows = store.fetchall(
            f"SELECT originator_version, topic, state FROM {self._snapshots_table} "
            "WHERE originator_id = ? ORDER BY originator_version DESC LIMIT 1",
            (stream_id.hex,),
        )
        for version, topic, state in rows:
            snapshot = self.mapper.to_domain_event(
                StoredEvent(stream_id, version, topic, bytes(state))
            )
            assert isinstance(snapshot, CustomerSnapshot)
            customer = snapshot.mutate(None)
        after = snapshot_version = customer.version if customer else 0
        while True:
            events = stream_after(store, stream_id, after, _REPLAY_PAGE)
            for version, topic, state in events:
                event = self.mapper.to_domain_event(StoredEvent(stream_id, version, topic, state))
                assert isinstance(event, CustomerEvent)
                customer = event.mutate(customer)
            if len(events) < _REPLAY_PAGE:
                break
            after = events[-1][0]
        return customer or Customer(id=stream_id, customer_id=customer_id), snapshot_version

    def store_snapshot(self, store: Queries, customer: Customer) -> None:
        """Snapshot the customer through `store`: inside a write session it
        commits, or rolls back, with the events it summarises. A snapshot
        already stored at this version is left as it is (same state)."""
        stored = self.mapper.to_stored_event(CustomerSnapshot.take(customer, datetime.now(UTC)))
        # RETURNING makes the insert a query, which is all a session offers.
        store.fetchall(
            f"INSERT INTO {self._snapshots_table} "
            "(originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING originator_version",
            (customer.id.hex, stored.originator_version, stored.topic, stored.state),
        )

    @property
    def _snapshots_table(self) -> str:
        # The library names it per store (SQLite: stored_snapshots).
        assert self.snapshots is not None
        name = getattr(self.snapshots.recorder, "events_table_name", None)
        assert isinstance(name, str)
        return name


def snapshot_due(previous_version: int, version: int) -> bool:
    """True when going from one version to the other crosses a snapshot interval."""
    return version // SNAPSHOT_INTERVAL > previous_version // SNAPSHOT_INTERVAL
