"""Possible duplicates (`ledger customers duplicates`, docs/cli.md): customers sharing
a phone in any notation or an e-mail in any case, compared by blind index; "not a
duplicate" marks that hide a pair, and withdrawals that bring it back; the rules
and the right `customers.merge`; on both stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.normalise import set_default_region
from ledger.rights import ALLOW_ALL, RightsPolicy
from services.bootstrap import prepare_store
from services.customers import erase_customer
from services.duplicates import (
    MarkRequest,
    duplicate_groups,
    find_duplicates,
    mark_not_duplicate,
    mask_email,
    mask_phone,
)
from services.errors import Category, ServiceError
from services.merging import MergeRequest, merge_customers
from tests.cli_runner import ledger_cli
from tests.factories import append_ok, event

CARDS = {
    "c-1": {"name": "Anna Petrova", "phone": "+49 30 1234567", "email": "Anna.P@Example.com"},
    "c-2": {"name": "Anna P.", "phone": "030 1234567"},
    "c-3": {"name": "A. Petrova", "email": "  anna.p@example.COM"},
    "c-4": {"name": "Ben Okafor", "phone": "0176 5550002", "email": "ben@example.com"},
}


@pytest.fixture(autouse=True)
def default_region() -> Iterator[None]:
    set_default_region(None)
    yield
    set_default_region(None)


@pytest.fixture
def stored(app: LedgerApplication) -> LedgerApplication:
    append_ok(app, [event("customer.created", c, {"card": card}) for c, card in CARDS.items()])
    return app


def candidates(app: LedgerApplication, customer_id: str) -> dict[str, list[str]]:
    with Connection(app.url) as conn:
        prepare_store(conn)
        answer = find_duplicates(conn, customer_id).as_json()
    assert answer["customer_id"] == customer_id
    return {c["customer_id"]: [r["field"] for r in c["reasons"]] for c in answer["items"]}


def mark(
    app: LedgerApplication,
    a: str,
    b: str,
    *,
    withdraw: bool = False,
    user: str = "u-1",
    policy: RightsPolicy = ALLOW_ALL,
) -> Any:
    request = MarkRequest(a, b, user, "two people, same office", withdraw=withdraw)
    return mark_not_duplicate(app, policy, request)


def test_found_across_phone_notations_and_email_case(stored: LedgerApplication) -> None:
    assert candidates(stored, "c-1") == {"c-2": ["phone"], "c-3": ["email"]}
    assert candidates(stored, "c-2") == {"c-1": ["phone"]}
    assert candidates(stored, "c-3") == {"c-1": ["email"]}
    assert candidates(stored, "c-4") == {}


def test_reasons_are_masked() -> None:
    assert mask_phone("030 1234567") == "+49 30 \u2022\u2022\u2022\u2022 67"
    assert mask_phone("+49 (0)30 123-4567") == "+49 30 \u2022\u2022\u2022\u2022 67"
    assert mask_email(" Anna.P@Example.com") == "a\u2022\u2022\u2022\u2022@example.com"


def test_the_answer_shows_no_full_value(stored: LedgerApplication) -> None:
    with Connection(stored.url) as conn:
        prepare_store(conn)
        text = json.dumps(find_duplicates(conn, "c-1").as_json()).lower()
        text += json.dumps(duplicate_groups(conn)).lower()
    for raw in ["1234567", "anna.p@", "+49301234567"]:
        assert raw not in text


def test_groups_link_every_customer_sharing_a_value(stored: LedgerApplication) -> None:
    with Connection(stored.url) as conn:
        prepare_store(conn)
        answer = duplicate_groups(conn)
    assert answer["truncated"] is False
    [group] = answer["groups"]
    assert [c["customer_id"] for c in group["customers"]] == ["c-1", "c-2", "c-3"]
    assert [r["field"] for r in group["reasons"]] == ["phone", "email"]


def test_a_mark_hides_the_pair_and_a_withdrawal_brings_it_back(stored: LedgerApplication) -> None:
    result = mark(stored, "c-2", "c-1")
    assert result.marked and result.recorded_on == ("c-2", "c-1")
    assert candidates(stored, "c-1") == {"c-3": ["email"]}
    assert candidates(stored, "c-2") == {}
    with pytest.raises(ServiceError) as again:
        mark(stored, "c-1", "c-2")
    assert again.value.category is Category.CONFLICT and again.value.code == "mark_exists"
    back = mark(stored, "c-1", "c-2", withdraw=True)
    assert not back.marked
    assert candidates(stored, "c-1") == {"c-2": ["phone"], "c-3": ["email"]}
    with pytest.raises(ServiceError) as twice:
        mark(stored, "c-1", "c-2", withdraw=True)
    assert twice.value.code == "mark_missing"


def test_a_mark_on_a_merged_card_keeps_the_whole_merge_apart(stored: LedgerApplication) -> None:
    """c-2 (c-1's phone) is merged into c-4: c-4's card lists c-1 through c-2.
    Marked on c-4's card, the pair is c-4 and c-1, and it hides c-1 from the
    whole merge, and the merge from c-1, as the rules see one customer."""
    with Connection(stored.url) as conn:
        prepare_store(conn)
        merge = MergeRequest("c-4", ("c-2",), "u-1", "same person", confirm=True)
        merge_customers(stored, conn, ALLOW_ALL, merge)
    assert candidates(stored, "c-4") == {"c-1": ["phone"]}
    # The reason masks the phone shared (c-2's), not the card's own (c-4's).
    with Connection(stored.url) as conn:
        [found] = find_duplicates(conn, "c-4").as_json()["items"]
    shared = mask_phone(CARDS["c-2"]["phone"])
    assert shared != mask_phone(CARDS["c-4"]["phone"])
    assert found["reasons"] == [{"field": "phone", "value": shared}]
    mark(stored, "c-4", "c-1")
    assert candidates(stored, "c-4") == {}
    assert candidates(stored, "c-1") == {"c-3": ["email"]}
    with Connection(stored.url) as conn:
        prepare_store(conn)
        [group] = duplicate_groups(conn)["groups"]
    assert [c["customer_id"] for c in group["customers"]] == ["c-1", "c-3"]


def test_the_rules_refuse_itself_an_unknown_and_an_erased_customer(
    stored: LedgerApplication,
) -> None:
    for other, code in [("c-1", "same_customer"), ("c-9", "customer_missing")]:
        with pytest.raises(ServiceError) as refused:
            mark(stored, "c-1", other)
        assert refused.value.code == code
        assert refused.value.field == "data.other_customer_id"
    erase_customer(stored, ALLOW_ALL, "c-3", "art. 17", "dpo")
    assert candidates(stored, "c-1") == {"c-2": ["phone"]}  # never an erased customer
    with pytest.raises(ServiceError) as erased:
        mark(stored, "c-1", "c-3")
    assert erased.value.code == "customer_erased"


def test_a_mark_needs_the_right_customers_merge(stored: LedgerApplication) -> None:
    policy = RightsPolicy(
        roles={"manager": frozenset({"customers.merge"})}, users={"u-boss": frozenset({"manager"})}
    )
    with pytest.raises(ServiceError) as refused:
        mark(stored, "c-1", "c-2", user="u-agent", policy=policy)
    assert refused.value.category is Category.FORBIDDEN
    assert refused.value.code == "right_missing"
    assert candidates(stored, "c-1") == {"c-2": ["phone"], "c-3": ["email"]}  # nothing stored
    assert mark(stored, "c-1", "c-2", user="u-boss", policy=policy).marked


def test_the_marks_read_model_holds_ids_only_and_rebuilds_the_same(
    stored: LedgerApplication,
) -> None:
    from projections import rebuild as replay
    from projections.registry import get

    mark(stored, "c-1", "c-2")
    mark(stored, "c-1", "c-3")
    mark(stored, "c-1", "c-3", withdraw=True)
    candidates(stored, "c-1")
    query = "SELECT customer_id, other_customer_id FROM rm_not_duplicates ORDER BY 1, 2"
    with Connection(stored.url) as conn:
        before = conn.fetchall(query)
        replay.rebuild(conn, [get("duplicates")])
        after = conn.fetchall(query)
    assert [tuple(r) for r in before] == [("c-1", "c-2"), ("c-2", "c-1")]
    assert [tuple(r) for r in after] == [tuple(r) for r in before]


def test_cli_marks_show_in_the_audit_history_of_both(
    stored: LedgerApplication, store_url: str
) -> None:
    url = store_url
    table = ledger_cli("customers", "duplicates", "c-1", db=url)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["customer", "name", "why"]
    assert "same phone +49 30 \u2022\u2022\u2022\u2022 67" in table.stdout
    done = ledger_cli(
        "customers", "not-duplicates", "c-1", "c-2", "--as", "u-7", "--reason", "twins", db=url
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "c-1 and c-2 marked not a duplicate\n"
    for customer in ("c-1", "c-2"):
        history = ledger_cli("audit", "history", "--customer", customer, "--format", "json", db=url)
        assert history.returncode == 0, history.stderr
        marks = [
            json.loads(line)
            for line in history.stdout.splitlines()
            if "customer.not_duplicate" in line
        ]
        assert len(marks) == 1
        assert marks[0]["actor"]["id"] == "u-7" and marks[0]["data"]["reason"] == "twins"
    again = ledger_cli(
        "customers", "not-duplicates", "c-1", "c-2", "--as", "u-7", "--reason", "x", db=url
    )
    assert again.returncode != 0 and "already marked" in again.stderr
    groups = ledger_cli("customers", "duplicates", "--format", "json", db=url)
    ids = [[c["customer_id"] for c in g["customers"]] for g in json.loads(groups.stdout)["groups"]]
    assert ids == [["c-1", "c-3"]]
    none = ledger_cli("customers", "duplicates", "c-4", db=url)
    assert none.stdout == "No possible duplicates of customer c-4.\n"
    unknown = ledger_cli("customers", "duplicates", "c-\x1b[31m", db=url)
    assert unknown.returncode != 0 and "\x1b" not in unknown.stderr


def test_a_policy_file_refuses_a_user_without_the_right(
    stored: LedgerApplication, store_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "rights.toml"
    policy.write_text('[roles]\nmanager = ["customers.merge"]\n[users]\nu-1 = ["manager"]\n')
    args = ("customers", "not-duplicates", "c-1", "c-2", "--reason", "r")
    refused = ledger_cli("--rights", str(policy), *args, "--as", "u-2", db=store_url)
    assert refused.returncode != 0 and "lacks the right customers.merge" in refused.stderr
    allowed = ledger_cli("--rights", str(policy), *args, "--as", "u-1", db=store_url)
    assert allowed.returncode == 0, allowed.stderr
