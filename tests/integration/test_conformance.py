"""The eventsourcing library's own recorder conformance cases, run against our
recorders on both stores: a peer's test suite we did not write."""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import psycopg
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
    PostgresTrackingRecorder,
)
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteDatastore,
    SQLiteProcessRecorder,
    SQLiteTrackingRecorder,
)
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    InfrastructureFactoryTestCase,
    NonInterleavingNotificationIDsBaseCase,
)
from eventsourcing.utils import Environment

from ledger.config import parse_database_url
from ledger.stores.postgres import LedgerPostgresApplicationRecorder, LedgerPostgresFactory
from ledger.stores.sqlite import LedgerSQLiteApplicationRecorder, LedgerSQLiteFactory
from tests.conftest import PG_URL


class _SQLiteFile:
    def setUp(self) -> None:
        fd, self.db_path = tempfile.mkstemp(suffix=".db")
        os.close(fd)
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.db_path + suffix):
                os.remove(self.db_path + suffix)


class _PostgresSchema:
    def setUp(self) -> None:
        self.pg = parse_database_url(PG_URL)
        self.schema = getattr(self, "schema", None) or f"conf_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.pg.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        self.datastores: list[PostgresDatastore] = []
        super().setUp()  # type: ignore[misc]

    def datastore(self) -> PostgresDatastore:
        ds = PostgresDatastore(
            dbname=self.pg.dbname,
            host=self.pg.host,
            port=self.pg.port,
            user=self.pg.user,
            password=self.pg.password,
            schema=self.schema,
            pool_size=4,
            max_overflow=4,
        )
        self.datastores.append(ds)
        return ds

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        for ds in self.datastores:
            ds.close()
        with psycopg.connect(self.pg.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class TestSQLiteApplicationRecorder(_SQLiteFile, ApplicationRecorderTestCase[Any]):
    def create_recorder(self) -> ApplicationRecorder:
        recorder = LedgerSQLiteApplicationRecorder(SQLiteDatastore(db_name=self.db_path))
        recorder.create_table()
        return recorder


class TestSQLiteNonInterleaving(_SQLiteFile, NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> ApplicationRecorder:
        recorder = LedgerSQLiteApplicationRecorder(SQLiteDatastore(db_name=self.db_path))
        recorder.create_table()
        return recorder


class TestPostgresApplicationRecorder(_PostgresSchema, ApplicationRecorderTestCase[Any]):
    def create_recorder(self) -> ApplicationRecorder:
        recorder = LedgerPostgresApplicationRecorder(self.datastore())
        recorder.create_table()
        return recorder


class TestPostgresNonInterleaving(_PostgresSchema, NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> ApplicationRecorder:
        recorder = LedgerPostgresApplicationRecorder(self.datastore())
        recorder.create_table()
        return recorder


class TestSQLiteFactory(_SQLiteFile, InfrastructureFactoryTestCase[LedgerSQLiteFactory]):
    def setUp(self) -> None:
        fd, self.db_path = tempfile.mkstemp(suffix=".db")
        os.close(fd)
        self.env = Environment(
            "TestCase",
            {
                InfrastructureFactory.PERSISTENCE_MODULE: (
                    "ledger.stores.sqlite:LedgerSQLiteFactory"
                ),
                "SQLITE_DBNAME": self.db_path,
            },
        )
        InfrastructureFactoryTestCase.setUp(self)

    def expected_factory_class(self) -> type[LedgerSQLiteFactory]:
        return LedgerSQLiteFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return SQLiteAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return LedgerSQLiteApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return SQLiteTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        class _Sub(SQLiteTrackingRecorder):
            pass

        return _Sub

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return SQLiteProcessRecorder


class TestPostgresFactory(_PostgresSchema, InfrastructureFactoryTestCase[LedgerPostgresFactory]):
    def setUp(self) -> None:
        pg = parse_database_url(PG_URL)
        self.schema = f"conf_{uuid.uuid4().hex[:10]}"
        self.env = Environment(
            "TestCase",
            {
                InfrastructureFactory.PERSISTENCE_MODULE: (
                    "ledger.stores.postgres:LedgerPostgresFactory"
                ),
                **{k: v for k, v in pg.library_env().items() if k.startswith("POSTGRES_")},
                "POSTGRES_SCHEMA": self.schema,
            },
        )
        _PostgresSchema.setUp(self)

    def expected_factory_class(self) -> type[LedgerPostgresFactory]:
        return LedgerPostgresFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return PostgresAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return LedgerPostgresApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return PostgresTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        class _Sub(PostgresTrackingRecorder):
            pass

        return _Sub

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return PostgresProcessRecorder
