"""The default region of phone numbers (`ledger --region`): which country a number
without a country code belongs to, for the customer search (ledger.normalise)."""

from __future__ import annotations

from ledger.config import ConfigError
from ledger.normalise import default_region, set_default_region
from services.errors import Category, ServiceError


def use_default_region(code: str | None) -> None:
    """The region national phone numbers are read in, for this process; None:
    LEDGER_DEFAULT_REGION, else the default, applies."""
    try:
        set_default_region(code)
    except ConfigError as exc:
        raise ServiceError(Category.USAGE, str(exc)) from None


def region_in_use() -> str:
    """The region this process reads national phone numbers in."""
    try:
        return default_region()
    except ConfigError as exc:
        raise ServiceError(Category.USAGE, str(exc)) from None
