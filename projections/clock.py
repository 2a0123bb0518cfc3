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
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def iso(moment: datetime) -> str:
    """The same text pydantic writes for an aware datetime (UTC as `Z`)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_moment(text: str) -> datetime:
    """An RFC 3339 time with a zone, or a bare date (midnight UTC).

    Raises ValueError with a reason a user can act on."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time "
            "(e.g. 2026-10-01T10:00:00+02:00)"
        ) from None
    if moment.tzinfo is None:
        if len(text.strip()) == 10:
            return moment.replace(tzinfo=UTC)
        raise ValueError(f"{text!r} needs a time zone (e.g. Z or +02:00)")
    return moment


def now() -> float:
    """Wall-clock seconds since the epoch, as tracking rows store them."""
    return time.time()
