"""A real `ledger serve` and a real Chromium for the card page tests.

The browser is Debian's Chromium (`/usr/bin/chromium`, or `LEDGER_CHROMIUM`),
driven by Playwright; `.ci/run` installs it when missing. When no browser can
start the tests FAIL with the reason: a page test that skips silently would let
CI pass without ever opening the page.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from tests.cli_runner import LEDGER, run_ledger

CHROMIUM = os.environ.get("LEDGER_CHROMIUM", "/usr/bin/chromium")
# Screenshots go here (gitignored; CI keeps them as artifacts).
ARTIFACTS = Path(
    os.environ.get(
        "LEDGER_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"
    )
)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    db: str
    process: subprocess.Popen[str]
    log: Path

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def ledger_server(
    db: str,
    tmp: Path,
    *,
    access: Path | None = None,
    rights: Path | None = None,
    people: Path | None = None,
    user: str | None = None,
) -> Iterator[Server]:
    """`ledger serve` on a free loopback port until the block ends; `people` and
    `user` are passed as `ledger --people PATH serve --user ID`."""
    port = free_port()
    env = {**os.environ, "LEDGER_DATABASE_URL": db}
    for name in ("LEDGER_ACCESS_FILE", "LEDGER_RIGHTS_POLICY"):
        env.pop(name, None)
    env.pop("LEDGER_PEOPLE_FILE", None)
    env.pop("LEDGER_PAGE_USER", None)
    args = [LEDGER, *(["--people", str(people)] if people else []), "serve"]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    if user is not None:
        args += ["--user", user]
    if access is not None:
        args += ["--access", str(access)]
    if rights is not None:
        env["LEDGER_RIGHTS_POLICY"] = str(rights)
    log = tmp / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp
        )
    server = Server(f"http://127.0.0.1:{port}", db, process, log)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_until_up(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"ledger serve exited with {server.process.returncode}:\n{server.log.read_text()}"
            )
        try:
            with urllib.request.urlopen(server.url("/healthz"), timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"ledger serve did not answer in {timeout} s:\n{server.log.read_text()}")


def load_demo(db: str) -> None:
    result = run_ledger("demo", db=db, timeout=120)
    assert result.returncode == 0, result.stderr


def tab_json(db: str, customer_id: str, tab: str, *args: str) -> dict[str, Any]:
    """What `ledger tab --format json` says: the page must show the same."""
    result = run_ledger("tab", customer_id, tab, "--format", "json", *args, db=db)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def append(db: str, events: list[dict[str, Any]]) -> None:
    result = run_ledger("append", "-", db=db, stdin="\n".join(json.dumps(e) for e in events))
    assert result.returncode == 0, result.stderr


@dataclass(frozen=True)
class Key:
    name: str
    token: str
    scopes: tuple[str, ...]
    user: str | None = None


def write_access_file(path: Path, keys: list[Key]) -> Path:
    """The access file format of `ledger access new-key` (hashes, never tokens)."""
    lines = []
    for key in keys:
        lines.append(f"[keys.{key.name}]")
        lines.append(f'sha256 = "{hashlib.sha256(key.token.encode()).hexdigest()}"')
        lines.append(f"scopes = {json.dumps(list(key.scopes))}")
        if key.user is not None:
            lines.append(f"user = {json.dumps(key.user)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def launch_browser() -> Iterator[Browser]:
    """Chromium, or a failed test saying why none could start."""
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
        except Exception as exc:
            pytest.fail(
                f"no browser could start ({CHROMIUM}): {str(exc).splitlines()[0]}. "
                "Install Debian's chromium (.ci/run does) or set LEDGER_CHROMIUM.",
                pytrace=False,
            )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page whose dialogs and console errors are recorded: a script the page
    did not mean to run shows up as one of them."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    accept_dialogs: bool = False

    def __post_init__(self) -> None:
        self.page.on("dialog", self._dialog)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        if self.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


def no_horizontal_overflow(page: Page) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the document: equal when nothing sticks out."""
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return int(widths[0]), int(widths[1])


# axe-core's rules for WCAG 2.0 and 2.1, levels A and AA.
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 AA violations of the page as it is shown, one line each
    (rule, impact, what it asks, the first elements breaking it); [] when none.
    Injected through DevTools, so the page's CSP does not stop it."""
    script = files("axe_playwright_python").joinpath("axe.min.js").read_text(encoding="utf-8")
    page.evaluate(script)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations']})",
        list(AXE_TAGS),
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']}: "
        + "; ".join(str(n["target"]) for n in v["nodes"][:5])
        for v in result["violations"]
    ]
