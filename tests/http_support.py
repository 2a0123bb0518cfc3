"""Running the real API for tests: uvicorn on a free loopback port, in a thread
(fast; one app per test) or as `ledger serve` in a subprocess (signals, logs)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api.access import AccessFile, load_access, new_key
from api.app import create_app
from services.bootstrap import Services
from tests.cli_runner import LEDGER


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_in_thread(
    db_url: str,
    *,
    access: AccessFile | None = None,
    rights: str | None = None,
    **options: Any,
) -> Iterator[httpx.Client]:
    """The app on a real uvicorn server on a free loopback port; yields a client."""
    app = create_app(Services(db_option=db_url, rights_option=rights), access=access, **options)
    with serve_app_in_thread(app) as client:
        yield client


@contextmanager
def serve_app_in_thread(app: Any) -> Iterator[httpx.Client]:
    """`app` on a real uvicorn server on a free loopback port; yields a client."""
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@dataclass
class Keys:
    """An access file with one key per role the tests need, and their tokens."""

    path: Path
    tokens: dict[str, str]

    def access(self) -> AccessFile:
        return load_access(self.path)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def page_sign_in(client: httpx.Client, token: str, customer: str = "c1") -> str:
    """Sign `client` in on the card page as a browser does (the sign-in form's
    CSRF token, then the key); the CSRF token of the card page it now sees."""
    form = client.get("/signin")
    found = _CSRF.search(form.text)
    assert found is not None, form.text
    answer = client.post("/signin", data={"csrf": found.group(1), "key": token})
    assert answer.status_code == 303, answer.text
    card = client.get(f"/customers/{customer}")
    assert card.status_code == 200, card.text
    found = _CSRF.search(card.text)
    assert found is not None, card.text
    return found.group(1)


def make_keys(directory: Path) -> Keys:
    path = directory / "access.toml"
    roles: dict[str, tuple[list[str], str | None]] = {
        "ingest": (["ingest"], None),
        "reader": (["read"], "u-1"),
        "agent": (["read", "tasks"], "u-1"),
        "backend": (["read", "act-as"], None),
        "auditor": (["audit"], None),
        "ops": (["ops"], None),
        "dpo": (["erase"], None),
    }
    tokens = {
        name: new_key(path, name, scopes, user).token for name, (scopes, user) in roles.items()
    }
    return Keys(path, tokens)


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    base: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextmanager
def serve_process(
    db_url: str, directory: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """`ledger serve` as a user runs it, on a free loopback port."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # a tiny race with other processes; the port is random
    log_path = directory / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [LEDGER, "--db", db_url, "serve", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ledger serve exited: {server.log()}")
            try:
                if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ledger serve did not start: {server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def spawned_children(server_pid: int) -> list[int]:
    """A process's live children started by multiprocessing's spawn (not its
    resource tracker): a server's append writer (`--append-writer process`);
    under `--workers N`, uvicorn's workers, each with its own writer."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, NotADirectoryError):
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == server_pid and b"multiprocessing.spawn" in command and state != "Z":
            found.append(int(entry.name))
    return found
