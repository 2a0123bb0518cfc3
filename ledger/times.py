"""Times as users type them on a command line (or in a query string)."""

from __future__ import annotations

from datetime import UTC, datetime


class BadTime(ValueError):
    """A time a user gave that we cannot read; the message starts with the text given,
    so callers prefix the option's name."""


def parse_user_time(text: str) -> datetime:
    """An RFC 3339 time with a zone, or a bare date (YYYY-MM-DD) meaning midnight UTC."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadTime(
            f"{text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time "
            "(e.g. 2026-10-01T10:00:00+02:00)"
        ) from None
    if moment.tzinfo is not None:
        return moment
    if len(value) == 10:
        return moment.replace(tzinfo=UTC)
    raise BadTime(f"{text!r} needs a time zone: give a time zone, e.g. {value}Z or {value}+02:00")
