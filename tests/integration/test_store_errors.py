"""The store's errors by kind (ledger.errors): recognised by class and code from
real drivers' errors, each kind one category of the service layer."""

from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path

import psycopg
import pytest
from eventsourcing.persistence import OperationalError as LibraryOperationalError

from ledger import errors
from ledger.errors import (
    DatabaseLocked,
    StoreError,
    StoreReadOnly,
    TablesMissing,
    ValueRefused,
    store_error,
)
from services.errors import STORE_CATEGORIES, Category, classify


def _raised(action: object) -> BaseException:
    assert callable(action)
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


def test_every_kind_is_one_category() -> None:
    kinds = {
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, StoreError) and c is not StoreError
    }
    assert kinds == set(STORE_CATEGORIES)


def test_sqlite_errors_by_code(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    missing = _raised(lambda: sqlite3.connect(path).execute("SELECT * FROM nowhere"))
    assert isinstance(store_error(missing), TablesMissing)
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    refused = _raised(lambda: read_only.execute("INSERT INTO t VALUES (1)"))
    assert isinstance(store_error(refused), StoreReadOnly)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    busy = _raised(lambda: waiter.execute("BEGIN IMMEDIATE"))
    holder.execute("ROLLBACK")
    kind = store_error(busy)
    assert isinstance(kind, DatabaseLocked)
    known = classify(busy)
    assert known is not None and known.category is Category.UNAVAILABLE
    assert "lock_timeout" in known.message


def test_postgres_errors_by_class(pg_url: str) -> None:
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
        missing = _raised(lambda: conn.execute("SELECT * FROM no_such_table_here"))
        nul = _raised(lambda: conn.execute("SELECT %s::text", ("a\x00b",)))
    assert isinstance(store_error(missing), TablesMissing)
    assert isinstance(store_error(nul), ValueRefused)
    known = classify(nul)
    assert known is not None and known.category is Category.REJECTED


def test_the_library_s_wrapping_keeps_the_kind(tmp_path: Path) -> None:
    def wrapped() -> None:
        try:
            sqlite3.connect(tmp_path / "w.db").execute("SELECT * FROM nowhere")
        except sqlite3.OperationalError as exc:
            raise LibraryOperationalError(str(exc)) from exc

    known = classify(_raised(wrapped))
    assert known is not None and known.category is Category.USAGE
    assert "ledger db migrate" in known.message


@pytest.mark.parametrize("bug", [ValueError("x"), KeyError("y"), RuntimeError("z")])
def test_a_bug_is_no_kind(bug: Exception) -> None:
    assert store_error(bug) is None and classify(bug) is None
