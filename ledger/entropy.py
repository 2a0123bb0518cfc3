"""Where an append's clock, generated event ids, data keys and nonces come from.

The system's by default. A test gives fixed ones, so the bytes an append stores
(ciphertexts and chain hashes included) can be pinned and compared across
changes of the code that writes them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


def _now() -> datetime:
    return datetime.now(UTC)


def _new_event_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Entropy:
    """The clock, event-id generator and random bytes an append uses (see the module docstring)."""

    now: Callable[[], datetime] = _now
    new_event_id: Callable[[], str] = _new_event_id
    # Data keys (32 bytes) and nonces (12); must be cryptographically random.
    random_bytes: Callable[[int], bytes] = os.urandom


SYSTEM = Entropy()
