"""How the customer search reads a phone number, an e-mail address and a name:
the one normalisation that both the search index (what the card says) and a
query (what someone typed) go through, so any notation of a value finds it.

- Phone: parsed with `phonenumbers` (Google's libphonenumber metadata) and kept
  as E.164 (`+49301234567`); a number without a country code is read in the
  default region (`LEDGER_DEFAULT_REGION`, `--region`, `DE` when neither is
  given). What does not parse as a possible number is kept as its digits only.
- E-mail: trimmed and lower-cased.
- Name: its words (runs of letters and digits, after Unicode NFKC), case-folded.
"""

from __future__ import annotations

import os
import re
import unicodedata

from ledger.config import ConfigError
from ledger.environment import DEFAULT_REGION_ENV

# The demo's customers are German; a deployment sets its customers' country.
FALLBACK_REGION = "DE"

_region_override: str | None = None

_WORD = re.compile(r"\w+")
_NOT_DIGIT = re.compile(r"\D")
# What a phone number typed in any common notation is made of.
_PHONE_CHARS = re.compile(r"\+?[\d\s().\-/]+")
_MIN_PHONE_DIGITS = 3


def check_region(code: str) -> str:
    """`code` as a region phonenumbers knows (ISO 3166-1 alpha-2, upper-cased);
    ConfigError naming it otherwise."""
    import phonenumbers

    region = code.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"unknown phone region {code!r}: give a two-letter country code such as DE or FR "
            f"({DEFAULT_REGION_ENV}, --region)"
        )
    return region


def set_default_region(code: str | None) -> None:
    """`--region CODE`: takes precedence over LEDGER_DEFAULT_REGION (None: it applies)."""
    global _region_override
    _region_override = None if code is None else check_region(code)


def default_region() -> str:
    """The region a phone number without a country code is read in."""
    if _region_override is not None:
        return _region_override
    env = os.environ.get(DEFAULT_REGION_ENV, "").strip()
    return check_region(env) if env else FALLBACK_REGION


def phone_key(text: str, region: str | None = None) -> str:
    """A phone number as E.164, or its digits only when it is not a possible number."""
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region or default_region())
    except phonenumbers.NumberParseException:
        return _NOT_DIGIT.sub("", text)
    result = phonenumbers.is_possible_number_with_reason(number)
    if result != phonenumbers.ValidationResult.IS_POSSIBLE:
        return _NOT_DIGIT.sub("", text)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_key(text: str) -> str:
    """An e-mail address trimmed and lower-cased."""
    return text.strip().lower()


def name_words(text: str) -> list[str]:
    """A name's words, case-folded, each once, in the order given."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return list(dict.fromkeys(_WORD.findall(folded)))


def looks_like_phone(text: str) -> bool:
    """Whether a query reads as a phone number: only the characters of a phone
    notation, with a few digits."""
    stripped = text.strip()
    return (
        _PHONE_CHARS.fullmatch(stripped) is not None
        and len(_NOT_DIGIT.sub("", stripped)) >= _MIN_PHONE_DIGITS
    )


def looks_like_email(text: str) -> bool:
    """Whether a query reads as an e-mail address (one word with an @ inside)."""
    stripped = text.strip()
    return "@" in stripped[1:-1] and not any(c.isspace() for c in stripped)
