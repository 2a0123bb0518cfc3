"""The one normalisation of the customer search (ledger.normalise) and its blind
indexes (ledger.keystore.index_key)."""

from __future__ import annotations

import pytest

from ledger.config import ConfigError
from ledger.environment import DEFAULT_REGION_ENV
from ledger.keystore.index_key import blind_index
from ledger.normalise import (
    default_region,
    email_key,
    looks_like_email,
    looks_like_phone,
    name_words,
    phone_key,
    set_default_region,
)


@pytest.mark.parametrize(
    "text",
    [
        "+49 30 1234567",
        "030 1234567",
        "(030) 123 45 67",
        "030/123-4567",
        "0049 30 1234567",
        "+49 (0)30 1234567",
        "+49-30-123.45.67",
        "+49301234567",
    ],
)
def test_every_notation_of_a_number_is_one_e164(text: str) -> None:
    assert phone_key(text, "DE") == "+49301234567"


def test_the_region_reads_national_numbers_only() -> None:
    assert phone_key("01 42 68 53 00", "FR") == "+33142685300"
    assert phone_key("+33 1 42 68 53 00", "DE") == "+33142685300"
    assert phone_key("(650) 253-0000", "US") == "+16502530000"


@pytest.mark.parametrize(
    ("text", "digits"),
    [("#12-34#", "1234"), ("++49 30", "4930"), ("12", "12"), ("abc", "")],
)
def test_what_is_no_possible_number_is_kept_as_its_digits(text: str, digits: str) -> None:
    assert phone_key(text, "DE") == digits


def test_email_is_trimmed_and_lower_cased() -> None:
    assert email_key("  Anna.P@Example.COM \t") == "anna.p@example.com"


def test_names_are_case_folded_words_each_once() -> None:
    assert name_words("  Anna-Maria  STRAẞE anna ") == ["anna", "maria", "strasse"]
    assert name_words("Zoë") == name_words("Zoe\u0308") == ["zoë"]  # composed or not
    assert name_words("O'Brien, Seán") == ["o", "brien", "seán"]
    assert name_words(" - ") == []


@pytest.mark.parametrize(
    ("query", "phone", "email"),
    [
        ("+49 30 1234567", True, False),
        ("030 1234567", True, False),
        ("12", False, False),
        ("Anna 2", False, False),
        ("anna@example.com", False, True),
        ("@example", False, False),
        ("anna @example.com", False, False),
    ],
)
def test_what_a_query_reads_as(query: str, phone: bool, email: bool) -> None:
    assert (looks_like_phone(query), looks_like_email(query)) == (phone, email)


def test_the_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEFAULT_REGION_ENV, raising=False)
    set_default_region(None)
    assert default_region() == "DE"
    monkeypatch.setenv(DEFAULT_REGION_ENV, "fr")
    assert default_region() == "FR"
    try:
        set_default_region("us")
        assert default_region() == "US"
        with pytest.raises(ConfigError, match="unknown phone region 'XX'"):
            set_default_region("XX")
    finally:
        set_default_region(None)
    monkeypatch.setenv(DEFAULT_REGION_ENV, "Germany")
    with pytest.raises(ConfigError, match="unknown phone region"):
        default_region()


def test_a_blind_index_binds_key_and_kind() -> None:
    key, other = b"k" * 32, b"o" * 32
    h = blind_index(key, "name", "anna")
    assert len(h) == 32 and "anna" not in h
    assert h == blind_index(key, "name", "anna")
    assert h != blind_index(other, "name", "anna")
    assert h != blind_index(key, "email", "anna")
