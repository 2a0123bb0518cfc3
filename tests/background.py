"""Running a long-lived service (relay, subscriber) in a thread during a test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def running_in_thread(
    run: Callable[[], object], stop: Callable[[], None], what: str, join_timeout: float
) -> Iterator[threading.Thread]:
    """Run `run` in a thread; on exit `stop` it and assert it ended without error."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop()
        thread.join(join_timeout)
        assert not thread.is_alive(), f"{what} did not stop"
        assert not errors, errors
