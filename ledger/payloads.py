"""The payload classes by event type, imported on first use.

The contracts are the whole catalogue as pydantic models, which take longer to
build than a tab read takes in all. Code that may run on a read path (revealing
personal values, the read models' modules) looks payload classes up here, so
only code that decodes or writes events pays for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.events import Payload


@cache
def payload_classes() -> Mapping[str, type[Payload]]:
    """Every event type's payload class, by type name."""
    from ledger.events import PAYLOADS

    return PAYLOADS
