"""Times on the card page: the viewer's zone (`?tz=`), showing the producers'
timestamps in it, and reading the times a user types into a form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.printable import printable

# Offered in the zone picker; any IANA name typed in works too.
COMMON_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Moscow",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
)


class UnknownZone(ValueError):
    """A `?tz=` that names no IANA zone; the page shows UTC and says why."""


def zone(name: str | None) -> tuple[str, tzinfo]:
    """The viewer's zone from `?tz=` (an IANA name), UTC when not given."""
    if not name or name.upper() == "UTC":
        return "UTC", UTC
    try:
        return name, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownZone(f"unknown time zone {printable(name)!r}") from None


@dataclass(frozen=True)
class Clock:
    """Shows the producers' timestamps in the viewer's zone."""

    name: str
    tz: tzinfo

    def moment(self, value: object) -> datetime | None:
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value).astimezone(self.tz)
        except ValueError:
            return None

    def show(self, value: object) -> str:
        when = self.moment(value)
        return "—" if when is None else when.strftime("%Y-%m-%d %H:%M")

    def iso(self, value: object) -> str:
        when = self.moment(value)
        return "" if when is None else when.isoformat()


class BadFormValue(ValueError):
    """A form field the page cannot read (a malformed due date); the action is refused."""


def local_moment(text: str, clock: Clock) -> datetime:
    """A `datetime-local` form value, typed in the viewer's zone, as a moment;
    BadFormValue when it is none."""
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        raise BadFormValue(f"due date {printable(text)!r}: expected YYYY-MM-DDTHH:MM") from None
    if naive.tzinfo is None:
        naive = naive.replace(tzinfo=clock.tz)
    return naive.astimezone(clock.tz).replace(second=0, microsecond=0)


def local_input(clock: Clock, value: object) -> str:
    """A timestamp as a `datetime-local` input value in the viewer's zone."""
    when = clock.moment(value)
    return "" if when is None else when.strftime("%Y-%m-%dT%H:%M")


def form_clock(name: str | None) -> Clock:
    """The clock of a form's hidden `tz` field; UTC for a zone that is none (the
    page that sent the form showed the times in it, so it is one the page knew)."""
    try:
        return Clock(*zone(name))
    except UnknownZone:
        return Clock(*zone(None))
