"""The one reader of user-given times (`ledger tab`, `ledger audit history`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger.times import BadTime, parse_user_time


def test_a_bare_date_is_midnight_utc() -> None:
    assert parse_user_time(" 2026-10-01 ") == datetime(2026, 10, 1, tzinfo=UTC)


def test_a_time_keeps_its_offset() -> None:
    moment = parse_user_time("2026-10-01T10:00:00+02:00")
    assert moment.utcoffset() == timedelta(hours=2)
    assert moment == datetime(2026, 10, 1, 8, tzinfo=UTC)
    assert parse_user_time("2026-10-01T10:00:00Z").tzinfo is not None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("yesterday", "'yesterday' is not a date (YYYY-MM-DD) or an RFC 3339 time"),
        ("2026-13-01", "'2026-13-01' is not a date"),
        ("2026-10-01T10:00:00", "'2026-10-01T10:00:00' needs a time zone: give a time zone"),
    ],
)
def test_what_cannot_be_read_says_why(text: str, reason: str) -> None:
    with pytest.raises(BadTime) as caught:
        parse_user_time(text)
    assert str(caught.value).startswith(reason)
