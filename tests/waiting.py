"""Waiting in a test for something another process or thread brings about."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T], timeout: float = 30, what: str = "the condition", every: float = 0.02
) -> T:
    """`check()`'s first truthy answer, asked every `every` seconds (an
    AssertionError naming `what` after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)
    return found
