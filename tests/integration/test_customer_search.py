"""Finding a customer (docs/http.md, `ledger customers find`): by id, phone in any
notation, e-mail in any case and name words, through blind indexes that follow
the card, never hold a value, and go with an erasure; on both stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.keystore.keyring import Keyring
from ledger.keystore.master import new_master_key_file
from ledger.normalise import set_default_region
from projections import rebuild as replay
from projections.registry import get
from services.bootstrap import prepare_store
from services.customers import erase_customer, find_customers
from services.errors import ServiceError
from tests.cli_runner import ledger_cli
from tests.factories import append_ok, event

CARDS = {
    "c-1": {"name": "Anna Maria Petrova", "phone": "+49 30 1234567", "email": "Anna.P@Example.com"},
    "c-2": {"name": "Ben Okafor", "phone": "0176 5550002", "email": "ben@example.com"},
    "c-3": {"name": "Anna Schulz", "phone": "#12-34#", "email": None},
    "c-4": {"name": "Zoë Ångström", "email": "zoe@example.org"},
}


def created(customer: str, card: dict[str, Any]) -> dict[str, Any]:
    return event("customer.created", customer, {"card": card})


def changed(customer: str, field: str, old: Any, new: Any) -> dict[str, Any]:
    return event(
        "customer.card_changed",
        customer,
        {"changes": [{"field": field, "old": old, "new": new}]},
        occurred_at="2026-10-02T10:00:00+02:00",
    )


@pytest.fixture(autouse=True)
def default_region() -> Iterator[None]:
    # `ledger --region` sets the process's region; the CLI runs in this process.
    set_default_region(None)
    yield
    set_default_region(None)


@pytest.fixture
def stored(app: LedgerApplication) -> LedgerApplication:
    append_ok(app, [created(c, card) for c, card in CARDS.items()])
    return app


def found(app: LedgerApplication, query: str, **kw: Any) -> list[tuple[str, str]]:
    with Connection(app.url) as conn:
        prepare_store(conn)
        answer = find_customers(conn, query, **kw)
    return [(m.customer_id, m.matched) for m in answer.items]


def index_rows(app: LedgerApplication) -> list[tuple[Any, ...]]:
    found(app, "c-0")  # the read model caught up
    with Connection(app.url) as conn:
        return sorted(conn.fetchall("SELECT hmac, kind, customer_id FROM rm_customer_index"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("c-2", [("c-2", "id")]),
        ("  c-2 ", [("c-2", "id")]),
        ("+49 30 1234567", [("c-1", "phone")]),
        ("030 1234567", [("c-1", "phone")]),
        ("+49 (0)30 123-4567", [("c-1", "phone")]),
        ("0049 30 12 34 567", [("c-1", "phone")]),
        ("+49 176 5550002", [("c-2", "phone")]),
        ("1234", [("c-3", "phone")]),  # unparseable: indexed as its digits
        ("anna.p@example.com", [("c-1", "email")]),
        ("  ANNA.P@EXAMPLE.COM", [("c-1", "email")]),
        ("anna", [("c-1", "name"), ("c-3", "name")]),
        ("ANNA petrova", [("c-1", "name")]),
        ("petrova anna maria", [("c-1", "name")]),
        ("ZOË ångström", [("c-4", "name")]),
        ("anna okafor", []),
        ("ann", []),  # whole words, not prefixes
        ("nobody", []),
        ("example.com", []),
    ],
)
def test_find_by_id_phone_email_and_name_words(
    stored: LedgerApplication, query: str, expected: list[tuple[str, str]]
) -> None:
    assert found(stored, query) == expected


def test_the_index_holds_no_value_only_hmacs(stored: LedgerApplication, store_url: str) -> None:
    rows = index_rows(stored)
    assert {kind for _, kind, _ in rows} == {"phone", "email", "name"}
    assert all(len(h) == 32 and int(h, 16) >= 0 for h, _, _ in rows)
    # Each column is scanned for the raw values except those random by
    # construction, which are held to their shape instead: a hex digest, a
    # ciphertext, a timestamp (their digits can hold "1234" by chance).
    text = json.dumps([[kind, customer] for _, kind, customer in rows]).lower()
    with Connection(stored.url) as conn:
        keys = conn.fetchall("SELECT name, wrapped, master_id, created_at FROM ledger_index_keys")
    assert keys
    raws = ["+49301234567", "301234567", "1234567", "5550002", "1234", "anna", "petrova"]
    raws += ["example", "okafor", "zoë", "ångström", "ben"]
    for name, wrapped, master_id, created_at in keys:
        text += str(name).lower()
        assert len(master_id) == 16 and int(master_id, 16) >= 0
        datetime.fromisoformat(created_at)
        assert [r for r in raws if r.encode() in bytes(wrapped)] == []
    assert [r for r in raws if r in text] == []


def test_an_erased_customer_is_no_longer_found(stored: LedgerApplication) -> None:
    erase_customer(stored, _allow_all(), "c-1", "art. 17", "dpo")
    assert [r for r in index_rows(stored) if r[2] == "c-1"] == []
    assert found(stored, "030 1234567") == []
    assert found(stored, "anna") == [("c-3", "name")]
    assert found(stored, "anna.p@example.com") == []


def test_a_changed_phone_replaces_its_entry(stored: LedgerApplication) -> None:
    append_ok(stored, [changed("c-1", "phone", "+49 30 1234567", "+44 20 7946 0018")])
    assert found(stored, "030 1234567") == []
    assert found(stored, "+44 20 7946 0018") == [("c-1", "phone")]
    assert found(stored, "anna petrova") == [("c-1", "name")]  # other fields stay
    append_ok(stored, [changed("c-1", "name", "Anna Maria Petrova", "Anna Weber")])
    assert found(stored, "petrova") == []
    assert found(stored, "weber ANNA") == [("c-1", "name")]
    append_ok(stored, [changed("c-2", "email", "ben@example.com", None)])
    assert found(stored, "ben@example.com") == []


def test_a_rebuild_makes_the_same_index(stored: LedgerApplication) -> None:
    append_ok(stored, [changed("c-2", "phone", "0176 5550002", "0176 5550003")])
    erase_customer(stored, _allow_all(), "c-4", "art. 17", "dpo")
    found(stored, "c-1")  # caught up
    before = index_rows(stored)
    with Connection(stored.url) as conn:
        replay.rebuild(conn, [get("search")])
    assert index_rows(stored) == before
    assert {c for _, _, c in before} == {"c-1", "c-2", "c-3"}


def test_results_are_paged_in_customer_id_order(app: LedgerApplication) -> None:
    append_ok(app, [created(f"p-{i}", {"name": f"Pat Number{i}"}) for i in range(5)])
    seen: list[str] = []
    cursor = None
    with Connection(app.url) as conn:
        prepare_store(conn)
        while True:
            page = find_customers(conn, "pat", limit=2, cursor=cursor)
            assert page.limit == 2 and len(page.items) <= 2
            seen += [m.customer_id for m in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [f"p-{i}" for i in range(5)]
        first = find_customers(conn, "pat", limit=2)
        with pytest.raises(ServiceError, match="bad cursor"):
            find_customers(conn, "number1", cursor=first.next_cursor)
        with pytest.raises(ServiceError, match="bad cursor"):
            find_customers(conn, "pat", cursor="nonsense")


def test_the_default_region_reads_national_numbers(app: LedgerApplication, store_url: str) -> None:
    append_ok(app, [created("fr-1", {"phone": "+33 1 42 68 53 00"})])
    assert found(app, "01 42 68 53 00") == []  # read as a German number
    french = ledger_cli(
        "--region", "FR", "customers", "find", "01 42 68 53 00", "--format", "json", db=store_url
    )
    assert french.returncode == 0, french.stderr
    assert [i["customer_id"] for i in json.loads(french.stdout)["items"]] == ["fr-1"]


def test_rotating_the_master_key_rewraps_the_index_key(
    stored: LedgerApplication, store_url: str, tmp_path: Path
) -> None:
    url = store_url
    new = tmp_path / "new.key"
    new_master_key_file(new)
    rotated = ledger_cli("keys", "rotate-master", str(new), db=url)
    assert rotated.returncode == 0, rotated.stderr
    Keyring.forget_all()
    again = ledger_cli(
        "--master-key", str(new), "customers", "find", "030 1234567", "--format", "json", db=url
    )
    assert again.returncode == 0, again.stderr
    assert [i["customer_id"] for i in json.loads(again.stdout)["items"]] == ["c-1"]
    Keyring.forget_all()
    with Connection(stored.url) as conn:
        assert {r[0] for r in conn.fetchall("SELECT master_id FROM ledger_index_keys")} == {
            r[0]
            for r in conn.fetchall("SELECT master_id FROM ledger_keys WHERE wrapped IS NOT NULL")
        }


def test_the_cli_prints_a_table_or_says_none_was_found(
    stored: LedgerApplication, store_url: str
) -> None:
    url = store_url
    table = ledger_cli("customers", "find", "anna", db=url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["customer", "name", "matched"]
    assert lines[1].split() == ["c-1", "Anna", "Maria", "Petrova", "name"]
    none = ledger_cli("customers", "find", "nobody \x1b[31m", db=url)
    assert none.returncode == 2 and "\x1b" not in none.stderr
    missing = ledger_cli("customers", "find", "nobody", db=url)
    assert missing.returncode == 0 and missing.stdout == 'No customer found for "nobody".\n'
    bad = ledger_cli("--region", "XX", "customers", "find", "0301234567", db=url)
    assert bad.returncode == 2 and "unknown phone region" in bad.stderr


def _allow_all() -> Any:
    from ledger.rights import ALLOW_ALL

    return ALLOW_ALL
