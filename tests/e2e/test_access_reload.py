"""A running server reads its access file again when it changes, or on
SIGHUP: a removed key's calls and page sessions end within seconds, without a
restart, and a broken file never opens the server."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from api.access import LiveAccess, load_access, new_key
from api.page_session import SESSION_COOKIE
from tests.factories import append_to_url, event
from tests.http_support import Keys, make_keys, page_sign_in, serve_in_thread, serve_process

TAB = "/v1/customers/c1/tabs/tasks"
WITHIN = 5.0  # seconds: the server looks at the file about once a second


def seed(url: str) -> None:
    append_to_url(
        url,
        [
            event("customer.created", "c1", {"card": {"name": "Ann"}}),
            event("task.created", "c1", {"task_id": "t1", "title": "Call", "assignee_id": "u-1"}),
        ],
    )


def without(path: Path, *names: str) -> str:
    """The access file's text with the tables of these keys taken out, as an
    operator removes a key."""
    text = path.read_text()
    for name in names:
        text = re.sub(rf"\[keys\.{re.escape(name)}\]\n(?:[^\[\n][^\n]*\n)*\n?", "", text)
    assert all(f"[keys.{n}]" not in text for n in names)
    return text


def replace_file(path: Path, text: str) -> None:
    """Written whole and renamed into place, as `ledger access new-key` does."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def age(path: Path, seconds: float = 60) -> int:
    """Make the file look `seconds` old; its mtime in ns."""
    then = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(then, then))
    return then


def eventually(check: Callable[[], bool], within: float = WITHIN) -> float:
    """Seconds until `check()` held; fails past `within`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "did not happen in time"
        time.sleep(0.1)
    return time.monotonic() - started


def test_the_file_is_looked_at_once_per_interval_and_only_loaded_when_changed(
    tmp_path: Path,
) -> None:
    keys = make_keys(tmp_path)
    age(keys.path)
    now = [0.0]
    live = LiveAccess(load_access(keys.path), interval=1.0, clock=lambda: now[0])
    before = live.current()
    assert live.verify(keys.tokens["reader"]) is not None
    now[0] = 5.0
    assert live.current() is before  # looked, unchanged: not loaded again
    replace_file(keys.path, without(keys.path, "reader"))
    now[0] = 5.5  # within the interval of the last look
    assert live.verify(keys.tokens["reader"]) is not None
    now[0] = 6.0
    assert live.verify(keys.tokens["reader"]) is None
    assert [k.name for k in live.keys] == [k.name for k in before.keys if k.name != "reader"]


def test_a_removed_key_is_refused_and_its_page_session_signed_out(
    store_url: str, tmp_path: Path
) -> None:
    seed(store_url)
    keys = make_keys(tmp_path)
    with serve_in_thread(store_url, access=keys.access()) as page:
        page_sign_in(page, keys.tokens["agent"])
        with httpx.Client(base_url=str(page.base_url)) as api:
            assert api.get(TAB, headers=keys.auth("reader")).status_code == 200

            replace_file(keys.path, without(keys.path, "reader", "agent"))

            def refused() -> bool:
                return api.get(TAB, headers=keys.auth("reader")).status_code == 401

            eventually(refused)
            # Another key is untouched.
            assert api.get("/v1/audit/anchor", headers=keys.auth("auditor")).status_code == 200
        # The browser's session is signed out: the card asks to sign in again.
        card = page.get("/customers/c1")
        assert card.status_code == 303 and card.headers["location"].startswith("/signin")


def test_changed_scopes_and_a_new_token_under_the_same_name_take_effect(
    sqlite_url: str, tmp_path: Path
) -> None:
    seed(sqlite_url)
    keys = make_keys(tmp_path)
    with serve_in_thread(sqlite_url, access=keys.access()) as page:
        page_sign_in(page, keys.tokens["agent"])
        with httpx.Client(base_url=str(page.base_url)) as api:
            text = keys.path.read_text()
            reader = text.index("[keys.reader]")
            replace_file(
                keys.path,
                text[:reader] + text[reader:].replace('scopes = ["read"]', 'scopes = ["audit"]', 1),
            )

            def now_an_auditor() -> bool:
                return api.get(TAB, headers=keys.auth("reader")).status_code == 403

            eventually(now_an_auditor)
            assert api.get("/v1/audit/anchor", headers=keys.auth("reader")).status_code == 200

            # The agent's token rotated: the same name, a new token.
            replace_file(keys.path, without(keys.path, "agent"))
            fresh = new_key(keys.path, "agent", ["read", "tasks"], "u-1").token

            def rotated() -> bool:
                return api.get(TAB, headers={"Authorization": f"Bearer {fresh}"}).status_code == 200

            eventually(rotated)
            assert api.get(TAB, headers=keys.auth("agent")).status_code == 401
        # A session signed in with the old token is over.
        card = page.get("/customers/c1")
        assert card.status_code == 303 and card.headers["location"].startswith("/signin")


def test_a_broken_file_keeps_the_last_good_keys_and_sighup_reloads(
    sqlite_url: str, tmp_path: Path
) -> None:
    seed(sqlite_url)
    keys: Keys = make_keys(tmp_path)
    good = keys.path.read_text()
    age(keys.path)
    with serve_process(sqlite_url, tmp_path, "--access", str(keys.path)) as server:
        base = server.base

        def status(name: str) -> int:
            return httpx.get(base + TAB, headers=keys.auth(name)).status_code

        assert status("reader") == 200
        # Broken, twice over: the last good keys stay, one line says why.
        replace_file(keys.path, good.replace('scopes = ["read"]', "scopes = [read", 1))
        time.sleep(1.5)
        assert status("reader") == 200
        replace_file(keys.path, "this is not TOML")
        time.sleep(1.5)
        assert status("reader") == 200 and status("ingest") == 403
        assert httpx.get(base + TAB, headers={"Authorization": "Bearer x"}).status_code == 401
        keys.path.unlink()
        time.sleep(1.5)
        assert status("reader") == 200

        # A change the watch cannot see (same file, size and mtime): SIGHUP.
        keys.path.write_text(good)
        mtime = age(keys.path)
        time.sleep(1.5)
        assert status("reader") == 200
        reader_hash = re.search(r'\[keys\.reader\]\nsha256 = "([0-9a-f]+)"', good)
        assert reader_hash is not None
        forged = good.replace(reader_hash.group(1), reader_hash.group(1)[::-1], 1)
        assert len(forged) == len(good)
        inode = keys.path.stat().st_ino
        with keys.path.open("r+") as out:  # in place: the same inode
            out.write(forged)
        os.utime(keys.path, ns=(mtime, mtime))
        assert keys.path.stat().st_ino == inode
        time.sleep(1.5)
        assert status("reader") == 200  # the watch saw no change
        server.process.send_signal(signal.SIGHUP)
        eventually(lambda: status("reader") == 401)
        assert server.process.poll() is None and status("agent") == 200
        assert server.terminate() == 0
        log = server.log()
    warnings = [line for line in log.splitlines() if "last good access file" in line]
    assert len(warnings) == 3, log  # one per broken state, not one per look
    assert "not valid TOML" in warnings[0] and "cannot read" in warnings[2]
    for token in keys.tokens.values():
        assert token not in log
    assert not re.search(r"[0-9a-f]{64}", log)
    assert SESSION_COOKIE not in log
