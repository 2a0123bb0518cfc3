"""Timestamps as the read models store and print them.

Producers send RFC 3339 times with any offset, so sorting the text would be
wrong; read models sort on integer microseconds since the epoch (UTC) and keep
the producer's text for display.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (UTC): what read models sort on, whatever the offset."""
    return (moment - _EPOCH) // _MICROSECOND


def iso(moment: datetime) -> str:
    """The same text pydantic writes for an aware datetime (UTC as `Z`)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def now() -> float:
    """Wall-clock seconds since the epoch, as tracking rows store them."""
    return time.time()
