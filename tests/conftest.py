"""Fixtures shared by the suite: a fresh store on SQLite and on a real PostgreSQL.

PostgreSQL tests use the server at LEDGER_TEST_PG_URL (default: the local
`test` database), each test in a fresh schema dropped afterwards. They are
never mocked; if the server is down, .ci/run starts it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

from ledger.application import LedgerApplication
from ledger.config import DatabaseURL, parse_database_url
from ledger.environment import MASTER_KEY_ENV
from ledger.keystore.keyring import Keyring, set_master_key_path
from ledger.keystore.master import new_master_key_file

pytest_plugins = ["tests.kafka_broker"]


def _keep_bytecode_outside_the_checkout() -> None:
    """With PYTHONDONTWRITEBYTECODE set (container images and this CI set it),
    each of the suite's ~340 `ledger` processes (CLI runs, servers, workers)
    compiled the whole package again: about 0.12 s of CPU each, an eighth of
    its start. The suite keeps compiled modules in a cache of its own in the
    temp directory instead, so the checkout stays free of them as that setting
    asks. Set here, before the xdist workers start: they and every child
    inherit it."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    prefix = str(Path(tempfile.gettempdir()) / "ledger-tests-pycache")
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    sys.dont_write_bytecode = False
    sys.pycache_prefix = prefix


_keep_bytecode_outside_the_checkout()


@pytest.fixture(scope="session", autouse=True)
def master_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One master key for the suite (PostgreSQL has no embedded default); a test
    about keys sets its own. Subprocesses (the CLI, servers) inherit it."""
    path = tmp_path_factory.mktemp("keys") / "master.key"
    new_master_key_file(path)
    old = os.environ.get(MASTER_KEY_ENV)
    os.environ[MASTER_KEY_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(MASTER_KEY_ENV, None)
    else:
        os.environ[MASTER_KEY_ENV] = old


@pytest.fixture(autouse=True)
def _forget_keys() -> Iterator[None]:
    # Each store's keyring holds a connection to its key table: closed after each test.
    yield
    set_master_key_path(None)
    Keyring.forget_all()


PG_URL = os.environ.get("LEDGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(parse_database_url(PG_URL).conninfo(), autocommit=True)


@contextmanager
def _fresh_pg_schema() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}schema={schema}"
    with _pg_admin() as conn:
        # A test's leftover connection may still hold a lock; wait a little, then
        # leave the schema behind rather than touch other sessions on the server.
        conn.execute("SET lock_timeout = '10s'")
        try:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except psycopg.errors.LockNotAvailable:
            warnings.warn(f"schema {schema} left behind: still locked", stacklevel=1)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL for a fresh PostgreSQL schema, dropped after the test."""
    with _fresh_pg_schema() as url:
        yield url


@pytest.fixture
def other_pg_url() -> Iterator[str]:
    """A second ledger in the same database: another fresh schema."""
    with _fresh_pg_schema() as url:
        yield url


@pytest.fixture
def fresh_pg_urls() -> Iterator[Callable[[], str]]:
    """Makes URLs of fresh PostgreSQL schemas (tenants' stores), all dropped after
    the test."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(_fresh_pg_schema())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store-facing test runs on both stores."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db_url(store_url: str) -> DatabaseURL:
    return parse_database_url(store_url)


@pytest.fixture
def app(db_url: DatabaseURL) -> Iterator[LedgerApplication]:
    application = LedgerApplication(db_url)
    yield application
    application.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One Chromium per test process, shared by every page test module (two
    Playwright instances cannot run in one process at once)."""
    from tests.page_support import launch_browser

    yield from launch_browser()
