"""Tampering for real: raw SQL as the database owner, immutability triggers off.

Each test changes the stored ledger the way someone with the database's keys
could, then runs `ledger audit verify` as an auditor would. Both stores.
"""

from __future__ import annotations

import uuid

import pytest
from click.testing import Result

from ledger.application import LedgerApplication
from ledger.chain import chain_hash
from tests.audit_support import Owner, notes, owner, run
from tests.factories import append_ok as append

EVENTS = 12  # c-1: created + 7 notes (positions 1-8), c-2: created + 3 notes (9-12)


@pytest.fixture
def ledger_url(app: LedgerApplication, store_url: str) -> str:
    append(app, notes("c-1", 7) + notes("c-2", 3))
    assert run(store_url, "audit", "verify").exit_code == 0
    return store_url


def _verify(url: str, *args: str) -> Result:
    return run(url, "audit", "verify", *args)


def _broken_at(result: Result, position: int) -> list[str]:
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"broken at position {position}: expected "), lines
    return lines


def _anchor(url: str) -> str:
    return run(url, "audit", "anchor").stdout.strip()


def test_changing_one_byte_of_a_payload_is_caught_at_that_position(ledger_url: str) -> None:
    with owner(ledger_url) as o:
        state = bytearray(o.row(5)[4])
        # The note's id: its text is stored encrypted (docs/privacy.md).
        at = state.index(b"c-1-n3") + 5
        state[at] = ord("8")  # "c-1-n3" -> "c-1-n8"
        o.set_state(5, bytes(state))
        stored = o.hash_of(5)
    lines = _broken_at(_verify(ledger_url), 5)
    assert lines[0].endswith(f"found {stored}")
    assert "expected chain_hash " in lines[0]
    assert lines[-1] == "  intact up to position 4"


def test_a_change_whose_own_hash_was_recomputed_breaks_the_next_link(ledger_url: str) -> None:
    with owner(ledger_url) as o:
        r = o.row(5)
        state = bytes(r[4]).replace(b"c-1-n3", b"c-1-n8")
        o.set_state(5, state)
        forged = chain_hash(o.hash_of(4), r[0], r[1], r[2], r[3], state, r[5], r[6], r[7])
        o.execute("UPDATE ledger_events SET chain_hash = ? WHERE notification_id = 5", (forged,))
    lines = _broken_at(_verify(ledger_url), 6)
    assert "the row before it was rewritten" in lines[1]


def test_deleting_an_event_is_caught_where_the_chain_skips_it(ledger_url: str) -> None:
    with owner(ledger_url) as o:
        o.execute("DELETE FROM ledger_events WHERE notification_id = 7")
    lines = _broken_at(_verify(ledger_url), 8)
    assert lines[1] == (
        "  position 7 is missing: events were deleted (positions are assigned without gaps)"
    )
    assert lines[2] == "  intact up to position 6"


def test_swapping_two_events_is_caught(ledger_url: str) -> None:
    with owner(ledger_url) as o:
        o.execute("UPDATE ledger_events SET notification_id = -1 WHERE notification_id = 4")
        o.execute("UPDATE ledger_events SET notification_id = 4 WHERE notification_id = 10")
        o.execute("UPDATE ledger_events SET notification_id = 10 WHERE notification_id = -1")
        assert o.row(4)[6] == "c-2"
    _broken_at(_verify(ledger_url), 4)


def test_swapping_two_payloads_is_caught(ledger_url: str) -> None:
    with owner(ledger_url) as o:
        a, b = bytes(o.row(3)[4]), bytes(o.row(4)[4])
        o.set_state(3, b)
        o.set_state(4, a)
    _broken_at(_verify(ledger_url), 3)


def _forged_row(o: Owner, position: int, previous_hash: str) -> tuple[object, ...]:
    """A plausible note for c-1, hashed the way the recorder would."""
    template = o.row(3)
    event_id = str(uuid.uuid4())
    state = bytes(template[4]).replace(str(template[5]).encode(), event_id.encode())
    state = state.replace(b"c-1-n1", b"c-1-forged")
    h = chain_hash(
        previous_hash, position, template[1], 99, template[3], state, event_id, "c-1", None
    )
    return (position, template[1], 99, template[3], state, event_id, "c-1", None, False, h)


def _insert(o: Owner, row: tuple[object, ...]) -> None:
    o.execute(
        "INSERT INTO ledger_events (notification_id, originator_id, originator_version, "
        "topic, state, event_id, customer_id, subject, creates_subject, chain_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row,
    )


def test_inserting_a_forged_event_after_the_head_is_caught(ledger_url: str) -> None:
    with owner(ledger_url) as o:
        # A forger who does not know the chain's rule reuses a plausible hash.
        row = list(_forged_row(o, EVENTS + 1, o.hash_of(EVENTS)))
        row[-1] = o.hash_of(EVENTS)
        _insert(o, tuple(row))
    _broken_at(_verify(ledger_url), EVENTS + 1)


def test_inserting_a_forged_event_before_the_first_is_caught(ledger_url: str) -> None:
    with owner(ledger_url) as o:
        # Correctly hashed from genesis, but the real first event does not chain to it.
        _insert(o, _forged_row(o, 0, "0" * 64))
    lines = _broken_at(_verify(ledger_url), 0)
    assert "before the first position" in lines[1]


def test_an_insertion_with_the_whole_chain_recomputed_is_caught_by_an_anchor(
    ledger_url: str,
) -> None:
    anchor = _anchor(ledger_url)
    with owner(ledger_url) as o:
        # Make room at position 6 and rewrite every hash after it: internally consistent.
        for position in range(EVENTS, 5, -1):
            o.execute(
                "UPDATE ledger_events SET notification_id = ? WHERE notification_id = ?",
                (position + 1, position),
            )
        _insert(o, _forged_row(o, 6, o.hash_of(5)))
        o.rechain_from(6)
    # A recomputation alone cannot tell this from honest appends (docs/tamper-evidence.md)...
    assert _verify(ledger_url).exit_code == 0
    # ...the auditor's anchor can.
    lines = _broken_at(_verify(ledger_url, "--anchor", anchor), EVENTS)
    assert lines[0].startswith(f"broken at position {EVENTS}: expected anchor hash ")


def test_deleting_the_newest_events_is_caught_by_an_anchor(ledger_url: str) -> None:
    anchor = _anchor(ledger_url)
    with owner(ledger_url) as o:
        o.execute("DELETE FROM ledger_events WHERE notification_id > ?", (EVENTS - 2,))
        new_head = o.hash_of(EVENTS - 2)
    plain = _verify(ledger_url)
    # The shorter chain is consistent; verify reports the head it now ends at, which
    # is what an auditor compares with the head they kept.
    assert plain.exit_code == 0
    assert plain.stdout == f"intact up to position {EVENTS - 2}, head {new_head}\n"
    lines = _broken_at(_verify(ledger_url, "--anchor", anchor), EVENTS)
    assert lines[0] == (
        f"broken at position {EVENTS}: expected event at the anchor's position, "
        f"found none: the ledger ends at position {EVENTS - 2}"
    )
    assert lines[1] == "  events the anchor covers were deleted"


def test_changing_an_event_before_an_anchor_is_caught_even_from_a_later_position(
    ledger_url: str,
) -> None:
    anchor = _anchor(ledger_url)
    with owner(ledger_url) as o:
        o.set_state(2, bytes(o.row(2)[4]).replace(b"c-1-n0", b"c-1-n9"))
        o.rechain_from(2)
    assert _verify(ledger_url, "--from", "10").exit_code == 0  # trusts the stored hash at 9
    _broken_at(_verify(ledger_url, "--from", "10", "--anchor", anchor), EVENTS)


def test_changing_the_one_unhashed_column_is_caught(
    ledger_url: str, app: LedgerApplication
) -> None:
    append(app, [_order("c-1", "o-1")])
    with owner(ledger_url) as o:
        o.execute(
            "UPDATE ledger_events SET creates_subject = ? WHERE notification_id = ?",
            (False, EVENTS + 1),
        )
    lines = _broken_at(_verify(ledger_url), EVENTS + 1)
    assert lines[0].endswith("expected creates_subject true for order.created, found false")


def test_a_mangled_row_is_reported_not_crashed_on(ledger_url: str) -> None:
    with owner(ledger_url) as o:
        o.execute("UPDATE ledger_events SET topic = NULL WHERE notification_id = 6")
    lines = _broken_at(_verify(ledger_url), 6)
    assert "missing or mistyped columns" in lines[0]


def _order(customer: str, order_id: str) -> dict[str, object]:
    from tests.factories import event

    return event("order.created", customer, {"order_id": order_id, "status": "new"})
