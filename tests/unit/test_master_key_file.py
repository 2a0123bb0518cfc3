"""The embedded store's master key file, made once however many processes
start on a new store at the same moment (`ledger serve --workers N`)."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from ledger.config import DatabaseURL, parse_database_url
from ledger.environment import MASTER_KEY_ENV
from ledger.keystore import master
from ledger.keystore.master import load_master, new_master_key_file, read_master_key_file


@pytest.fixture(params=["hard links", "no hard links"])
def links(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on a filesystem with hard links (this one) and on one without
    (FAT, some network and FUSE mounts: os.link fails as there)."""
    if request.param == "no hard links":

        def refuse(src: str, dst: str) -> None:
            raise PermissionError(errno.EPERM, "Operation not permitted", src, None, dst)

        monkeypatch.setattr(master.os, "link", refuse)
    return str(request.param)


def test_starters_at_once_on_a_new_store_all_get_the_one_key_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: str
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


def test_a_new_key_file_is_the_owners_only_and_never_overwritten(
    tmp_path: Path, links: str
) -> None:
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


def test_a_starter_waits_for_a_key_file_another_is_still_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without hard links the file is claimed first and written after: a starter
    # that finds it empty in between waits for the key instead of failing.
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    url = parse_database_url(f"sqlite:///{tmp_path}/store.db")
    path = Path(url.path + ".master-key")
    path.touch(mode=0o600)
    other = tmp_path / "other.key"
    key = new_master_key_file(other)
    writer = threading.Timer(0.2, lambda: path.write_bytes(other.read_bytes()))
    writer.start()
    try:
        assert load_master(url) == key
    finally:
        writer.join()


def test_a_whole_key_without_its_line_end_is_read_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An embedded store's key file rewritten by hand (`echo -n`) is no key
    # still being written: nothing waits for a line end that never comes.
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    url = parse_database_url(f"sqlite:///{tmp_path}/store.db")
    key = new_master_key_file(tmp_path / "other.key")
    path = Path(url.path + ".master-key")
    path.write_bytes((tmp_path / "other.key").read_bytes().strip())
    started = time.monotonic()
    assert load_master(url) == key
    assert time.monotonic() - started < 1


def test_a_key_that_cannot_be_written_in_place_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without hard links the key is written into the claimed file itself: a full
    # disk then must not leave part of a key that later starts would read.
    def refuse(src: str, dst: str) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", src, None, dst)

    monkeypatch.setattr(master.os, "link", refuse)
    written = master._write_synced
    calls = []

    def full_disk_in_place(fd: int, line: str) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the first is the private copy, the second `path`
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        written(fd, line)

    monkeypatch.setattr(master, "_write_synced", full_disk_in_place)
    path = tmp_path / "master.key"
    with pytest.raises(OSError, match="No space left"):
        new_master_key_file(path)
    assert list(tmp_path.iterdir()) == []
