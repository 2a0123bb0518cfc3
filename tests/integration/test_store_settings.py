"""Store settings: waiting for the embedded store's write lock, and URLs the ledger
cannot use safely, each one line with its exit code."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.input import READ_CHUNK
from tests.cli_runner import LEDGER, run_ledger
from tests.factories import event, ndjson


def test_a_writer_waits_for_the_lock_then_exits_3_naming_the_setting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    created = event("customer.created", "c1", {"card": {}})
    assert run_ledger("append", db=url, stdin=ndjson([created])).returncode == 0
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-import
    try:
        # Readers are not blocked by a writer (WAL).
        history = run_ledger("audit", "history", "--customer", "c1", db=url, timeout=20)
        assert history.returncode == 0, history.stderr
        note = event("note.added", "c1", {"note_id": "n1", "text": "x"})
        started = time.monotonic()
        result = run_ledger("append", db=url + "?lock_timeout=1", stdin=ndjson([note]))
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 3
    assert result.stderr.startswith("error: the database is locked: another writer held it")
    assert "lock_timeout=SECONDS" in result.stderr and len(result.stderr.splitlines()) == 1
    assert waited >= 1
    # Once the lock is free the same append goes through.
    assert run_ledger("append", db=url, stdin=ndjson([note])).returncode == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@127.0.0.1:99999/x", "port must be a number from 1 to 65535"),
        ("postgresql://u@127.0.0.1:0/x", "port must be a number from 1 to 65535"),
        ("postgresql://u@127.0.0.1/x?schema=Mixed", "schema 'Mixed' must be lower-case"),
        ("postgresql://u@127.0.0.1/x?schema=a%3Bdrop", "schema 'a;drop' must be lower-case"),
        ("postgresql://u@127.0.0.1/x?connect_timeout=-1", "connect_timeout must be a whole"),
        ("postgresql://u@127.0.0.1/x?pool_size=0", "pool_size must be a whole number of conn"),
        ("sqlite:///x.db?lock_timeout=soon", "lock_timeout must be a whole number of seconds"),
        ("sqlite:///x.db?timeout=1", "unknown option 'timeout'"),
    ],
)
def test_unusable_urls_exit_2_naming_the_setting(url: str, message: str, tmp_path: Path) -> None:
    result = run_ledger("tab", "c1", "card", db=url, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: bad database URL") and message in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_lower_case_schema_with_underscores_and_digits_works(pg_url: str) -> None:
    created = event("customer.created", "c1", {"card": {}})
    assert run_ledger("append", db=pg_url, stdin=ndjson([created])).returncode == 0
    shown = run_ledger("tab", "c1", "card", "--format", "json", db=pg_url)
    assert shown.returncode == 0, shown.stderr


def test_an_import_stalled_past_the_idle_limit_says_so_and_stores_nothing(pg_url: str) -> None:
    created = json.dumps(event("customer.created", "c1", {"card": {}}))
    # More than one batch, and more than the first chunk the reader takes (it
    # waits for a whole chunk): an input of one batch is decided before any
    # transaction opens; a longer one stores batch by batch in one
    # transaction, which the stall then leaves idle.
    notes = [
        json.dumps(event("note.added", "c1", {"note_id": f"n{i}", "text": "x" * 4000}))
        for i in range(READ_CHUNK // 4000 + 2)
    ]
    late = json.dumps(event("note.added", "c1", {"note_id": "late", "text": "y"}))
    slow = (
        f"import sys, time; print({created!r}); print(*{notes!r}, sep='\\n', flush=True); "
        f"time.sleep(3); print({late!r})"
    )
    feeder = subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE)
    assert feeder.stdout is not None
    result = subprocess.run(
        [LEDGER, "--db", pg_url + "&idle_timeout=1", "append", "--batch-size", "1", "-"],
        stdin=feeder.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    feeder.wait()
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("error: the import waited for input longer than PostgreSQL")
    assert len(result.stderr.splitlines()) == 1
    shown = run_ledger("audit", "history", "--customer", "c1", "--format", "json", db=pg_url)
    assert json.loads(shown.stdout)["count"] == 0
