"""The people directory file: CSV or TOML of ids and names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.config import ConfigError
from ledger.people import EMPTY, load_directory, person_key


def test_a_bare_id_is_a_user_and_an_actor_reference_keeps_its_kind() -> None:
    assert person_key("u-1") == "user:u-1"
    assert person_key("integration:mailer") == "integration:mailer"
    assert person_key("odd:id") == "user:odd:id"  # not an actor kind: a user id


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,name\nu-1, Maria  Keller \nintegration:mailer,Mail gateway\n,nobody\n")
    directory = load_directory(path)
    assert directory.get("u-1") == "Maria Keller"
    assert directory.get("user:u-1") == "Maria Keller"
    assert directory.get("integration:mailer") == "Mail gateway"
    assert directory.get("u-2") is None


def test_toml(tmp_path: Path) -> None:
    path = tmp_path / "people.toml"
    path.write_text('[people]\nu-1 = "Maria Keller"\n"system:crm" = "The CRM"\n')
    directory = load_directory(path)
    assert (directory.get("u-1"), directory.get("system:crm")) == ("Maria Keller", "The CRM")


def test_no_file_is_an_empty_directory() -> None:
    assert load_directory(None) is EMPTY


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.csv", "user,who\nu-1,Maria\n", "needs a header line"),
        ("p.toml", "[people\n", "not valid TOML"),
        ("p.toml", "[users]\nu-1 = 'M'\n", "unknown key 'users'"),
        ("p.toml", "[people]\nu-1 = 3\n", "must map ids to names"),
        ("p.csv", "id,name\nu-1,Ma\x1bria\n", "not printable"),
    ],
)
def test_a_bad_file_says_what_is_wrong(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_directory(path)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_directory(tmp_path / "nope.csv")
