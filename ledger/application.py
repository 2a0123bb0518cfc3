"""The ledger as an eventsourcing Application: storage, mapper and repository."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from ledger.db import Queries, pg_array
from ledger.domain import (
    DATA_TYPES,
    SUBJECT_TYPES,
    Customer,
    CustomerSnapshot,
    customer_stream_id,
)
from ledger.errors import cannot_open
from ledger.events import PAYLOADS
from ledger.events.catalogue import recorded_data_unchecked
from ledger.keystore.keyring import Keyring
from ledger.mapper import LedgerMapper
from ledger.printable import first_line as first_line  # re-exported: appending, runner
from ledger.reading import stream_uuid, streams_after
from ledger.stores.base import LedgerRecorder

# A customer's state is snapshotted every this many events, so loading a busy
# customer replays at most this many events.
SNAPSHOT_INTERVAL = 500
# Events replayed per query when loading customers, so a long stream loads in
# constant memory beyond the customer's own state (a batch's customers have a
# few events each since their snapshots: one page, usually).
_LOAD_PAGE = 5000
# Customers loaded per pair of statements by `load_customers`.
_LOAD_CHUNK = 200


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
            raise cannot_open(url, exc) from exc

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
        return self.load_customers(store, [customer_id])[customer_id]

    def load_customers(
        self,
        store: Queries,
        customer_ids: Sequence[str],
        versions: Mapping[UUID, int] | None = None,
    ) -> dict[str, tuple[Customer, int]]:
        """`load_customer` for many customers in two statements a chunk (their
        latest snapshots, then the events after them), not two or more each: a
        batch over hundreds of stored customers made a round trip per customer.
        Given their streams' stored `versions` (as `store` sees them), only the
        events that change a state are read, not those that only move its version
        (most of them)."""
        loaded: dict[str, tuple[Customer, int]] = {}
        for start in range(0, len(customer_ids), _LOAD_CHUNK):
            chunk = customer_ids[start : start + _LOAD_CHUNK]
            loaded.update(self._load_chunk(store, chunk, versions))
        return loaded

    def _load_chunk(
        self, store: Queries, customer_ids: Sequence[str], versions: Mapping[UUID, int] | None
    ) -> dict[str, tuple[Customer, int]]:
        streams = {customer_stream_id(c): c for c in customer_ids}
        # The latest snapshot of each stream: SQLite takes a bare column's values
        # from the row MAX() picked; PostgreSQL says so with DISTINCT ON.
        if store.kind == "sqlite":
            keys: list[str] = [s.hex for s in streams]
            latest = (
                f"SELECT originator_id, MAX(originator_version), topic, state "
                f"FROM {self._snapshots_table} "
                f"WHERE originator_id IN ({','.join('?' * len(keys))}) GROUP BY originator_id"
            )
        else:
            keys = [pg_array(streams)]
            latest = (
                f"SELECT DISTINCT ON (originator_id) originator_id, originator_version, "
                f"topic, state FROM {self._snapshots_table} "
                "WHERE originator_id = ANY(?::uuid[]) "
                "ORDER BY originator_id, originator_version DESC"
            )
        customers: dict[UUID, Customer] = {}
        started: dict[UUID, int] = {}
        for stream, version, topic, state in store.fetchall(latest, keys):
            stream_id = stream_uuid(stream)
            snapshot = self.mapper.to_domain_event(
                StoredEvent(stream_id, version, topic, bytes(state))
            )
            assert isinstance(snapshot, CustomerSnapshot)
            customers[stream_id] = snapshot.mutate(None)
            started[stream_id] = version
        # Each stream's events after its snapshot (every event if it has none).
        after = {stream_id: started.get(stream_id, 0) for stream_id in streams}
        self._apply_after(store, customers, after, streams, stateful_only=versions is not None)
        loaded: dict[str, tuple[Customer, int]] = {}
        for stream_id, customer_id in streams.items():
            customer = customers.get(stream_id) or Customer(id=stream_id, customer_id=customer_id)
            if versions is not None:
                customer.version = max(customer.version, versions.get(stream_id, 0))
            loaded[customer_id] = (customer, started.get(stream_id, 0))
        return loaded

    def catch_up_customers(
        self, store: Queries, customers: Sequence[Customer], versions: Mapping[UUID, int]
    ) -> None:
        """Bring customers' states loaded earlier up to their stored `versions`:
        each applies the stored events after its own version (another writer's
        since), in one statement a page, where loading them afresh would decode
        their snapshots and every stateful event again."""
        for start in range(0, len(customers), _LOAD_CHUNK):
            chunk = {c.id: c for c in customers[start : start + _LOAD_CHUNK]}
            after = {stream_id: c.version for stream_id, c in chunk.items()}
            self._apply_after(store, chunk, after, {}, stateful_only=True)
            for stream_id, customer in chunk.items():
                customer.version = versions[stream_id]

    def _apply_after(
        self,
        store: Queries,
        customers: dict[UUID, Customer],
        after: dict[UUID, int],
        names: dict[UUID, str],
        *,
        stateful_only: bool = False,
    ) -> None:
        """Apply to `customers` (by stream; one made from `names` for a stream
        without a state yet) their streams' events after the versions in
        `after`, a page at a time in stream order, so a long stream loads in
        bounded memory. `stateful_only`: the events that only move a version
        are not read (the caller sets the versions)."""
        while after:
            rows = streams_after(
                store, after, _LOAD_PAGE, DATA_TYPES, SUBJECT_TYPES, only_types=stateful_only
            )
            for stream_id, version, topic, state, subject in rows:
                after[stream_id] = version
                customer = customers.get(stream_id)
                if customer is None:
                    customer = customers[stream_id] = Customer(
                        id=stream_id, customer_id=names[stream_id]
                    )
                # Neither: a note, a call ... only moves the version, so the event
                # is not decoded (most of a stream, and most of loading's cost); a
                # visit, a task ... is applied from its subject column alone.
                if subject is not None:
                    # `kind:id`: a kind holds no colon; an id may.
                    customer.apply_subject(PAYLOADS[topic], subject.partition(":")[2])
                elif state is not None:
                    customer.apply(recorded_data_unchecked(topic, state))
                customer.version = version
            if len(rows) < _LOAD_PAGE:
                break
            # Streams come in id order (a uuid orders as its hex text): those
            # before the last row's are complete.
            last = rows[-1][0].hex
            after = {s: v for s, v in after.items() if s.hex >= last}

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
