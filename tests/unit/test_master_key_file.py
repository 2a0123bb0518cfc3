"""The embedded store's master key file, made once however many processes
start on a new store at the same moment (`ledger serve --workers N`)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from ledger.config import DatabaseURL, parse_database_url
from ledger.environment import MASTER_KEY_ENV
from ledger.keystore.master import load_master, new_master_key_file, read_master_key_file


def test_starters_at_once_on_a_new_store_all_get_the_one_key_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)  # the embedded default, beside the store
    for attempt in range(20):
        url = parse_database_url(f"sqlite:///{tmp_path}/store-{attempt}.db")
        keys, failures = _start_at_once(url, 8)
        assert failures == []
        written = read_master_key_file(Path(url.path + ".master-key"))
        assert keys == [written] * 8
    assert sorted(p.name for p in tmp_path.iterdir() if "master-key" in p.name) == sorted(
        f"store-{i}.db.master-key" for i in range(20)
    )  # no file left half-way


def test_a_new_key_file_is_the_owners_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    key = new_master_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        new_master_key_file(path)
    assert read_master_key_file(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


def _start_at_once(url: DatabaseURL, starters: int) -> tuple[list[bytes], list[BaseException]]:
    """`load_master` in `starters` threads released together: the keys, the failures."""
    start = threading.Barrier(starters)
    keys: list[bytes] = []
    failures: list[BaseException] = []

    def starter() -> None:
        start.wait()
        try:
            keys.append(load_master(url))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=starter) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return keys, failures
