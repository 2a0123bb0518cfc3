"""Connecting to Kafka within a deadline, with one line saying why not.

kafka-python's own bootstrap either retries for a long time or, on a TLS handshake
with a plaintext listener, never returns at all; `connect_or_fail` bounds it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from consumers.kafka_config import KafkaSettings

_T = TypeVar("_T")


class KafkaUnavailable(RuntimeError):
    """The brokers did not answer (unreachable, refused, TLS or SASL failure)."""


class _LastFailure(logging.Handler):
    """Keeps kafka-python's last connection-failure message: it knows why, its
    exceptions only say "Unable to bootstrap"."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a foreign log call with bad arguments must not break ours
            return
        if "failed:" in message and "Unable to bootstrap" not in message:
            reason = message.split("failed:", 1)[1].strip()
            reason = re.sub(r"\s*\(backoff [^)]*\)$", "", reason)
            self.reason = _explain(reason)


def _explain(reason: str) -> str:
    # kafka-python's SCRAM client raises a bare KeyError on a rejected login.
    if re.fullmatch(r"'[a-z]'", reason):
        return "SASL authentication failed (the server rejected the login)"
    return reason


@contextmanager
def _capturing_kafka_failures() -> Iterator[_LastFailure]:
    """While connecting, kafka-python's log lines (one per retry) go only to us: the
    user gets one line with the reason, not the retry chatter."""
    handler = _LastFailure()
    kafka_logger = logging.getLogger("kafka")
    saved = (kafka_logger.level, kafka_logger.propagate)
    kafka_logger.addHandler(handler)
    kafka_logger.setLevel(logging.WARNING)
    kafka_logger.propagate = False
    try:
        yield handler
    finally:
        kafka_logger.removeHandler(handler)
        kafka_logger.setLevel(saved[0])
        kafka_logger.propagate = saved[1]


def connect_or_fail(
    settings: KafkaSettings,
    make: Callable[[], _T],
    what: str = "Kafka",
    cancel: threading.Event | None = None,
) -> _T:
    """Build a kafka-python client within `settings.connect_timeout_s`, or raise
    `KafkaUnavailable` with one line saying where, how and why.

    The client is built on a daemon thread: a TLS handshake against a plaintext
    listener blocks kafka-python past its own bootstrap timeout, and a stuck daemon
    thread does not keep the process from exiting."""
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(make())
        except BaseException as exc:
            error.append(exc)

    with _capturing_kafka_failures() as failures:
        thread = threading.Thread(target=target, name="kafka-connect", daemon=True)
        thread.start()
        # kafka-python's own bootstrap deadline normally fires first; the slack only
        # matters when it hangs past it.
        deadline = time.monotonic() + settings.connect_timeout_s + 2.0
        while thread.is_alive() and time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise KafkaUnavailable(f"{what}: connection attempt cancelled")
            thread.join(0.1)
    if result:
        return result[0]
    reason = failures.reason
    if error and reason is None:
        reason = f"{type(error[0]).__name__}: {error[0]}"
    if reason is None:
        reason = "no answer (a TLS client at a plaintext listener, or packets dropped on the way)"
    if error and not _is_kafka_error(error[0]):
        raise error[0]
    raise KafkaUnavailable(
        f"{what} at {settings.describe()} not reachable within "
        f"{settings.connect_timeout_s:g}s: {reason}"
    )


def _is_kafka_error(exc: BaseException) -> bool:
    from kafka.errors import KafkaError

    return isinstance(exc, KafkaError | OSError)
