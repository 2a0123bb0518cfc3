"""`ledger audit verify` and `ledger audit anchor` on an untouched ledger, and their input."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.audit.verify import Anchor, verify_chain
from ledger.chain import GENESIS_HASH, chain_hash, chain_link
from ledger.db import Connection
from tests.audit_support import notes, owner, run
from tests.factories import append_ok as append


def _reference_link(previous: str, *args: Any) -> str:
    """The chain's definition (docs/tamper-evidence.md), written out plainly and
    independently of ledger.chain, so a change to the hashed layout fails here."""
    position, oid, version, topic, state, event_id, customer_id, subject = args
    h = hashlib.sha256(bytes.fromhex(previous))
    h.update(position.to_bytes(8, "big", signed=True))
    for text in (oid.hex if isinstance(oid, uuid.UUID) else oid, topic):
        raw = text.encode()
        h.update(len(raw).to_bytes(4, "big") + raw)
    for optional in (event_id, customer_id, subject):
        if optional is None:
            h.update((0).to_bytes(4, "big"))  # NULL: length 0
        elif optional == "":
            h.update((0xFFFFFFFF).to_bytes(4, "big"))  # empty: its own marker
        else:
            raw = optional.encode()
            h.update(len(raw).to_bytes(4, "big") + raw)
    h.update(version.to_bytes(8, "big", signed=True))
    h.update(len(state).to_bytes(8, "big") + state)
    return h.hexdigest()


def test_chain_links_match_the_documented_definition() -> None:
    rng = random.Random(3)
    previous = GENESIS_HASH
    for i in range(300):
        args: tuple[Any, ...] = (
            rng.randrange(-5, 2**62),
            uuid.uuid4() if i % 2 else uuid.uuid4().hex,
            rng.randrange(1, 10**6),
            rng.choice(["order.changed", "note.added", "tôpic"]),
            rng.randbytes(rng.randrange(0, 600)),
            rng.choice([None, str(uuid.uuid4())]),
            rng.choice([None, "", "c-1", "клиент-7"]),
            rng.choice([None, "order:o-1", "task:t/é"]),
        )
        expected = _reference_link(previous, *args)
        assert chain_hash(previous, *args) == expected
        assert chain_link(bytes.fromhex(previous), *args).hex() == expected
        previous = expected


def test_an_untouched_ledger_is_intact_up_to_its_head(
    app: LedgerApplication, store_url: str
) -> None:
    append(app, notes("c-1", 9) + notes("c-2", 4))
    with owner(store_url) as o:
        head = o.hash_of(15)
    result = run(store_url, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"intact up to position 15, head {head}\n"


def test_an_empty_ledger_is_intact_at_the_genesis_hash(
    app: LedgerApplication, store_url: str
) -> None:
    result = run(store_url, "audit", "verify")
    assert result.exit_code == 0
    assert result.stdout == f"intact up to position 0, head {GENESIS_HASH}\n"
    anchor = run(store_url, "audit", "anchor")
    assert anchor.stdout == f"0:{GENESIS_HASH}\n"
    assert run(store_url, "audit", "verify", "--anchor", f"0:{GENESIS_HASH}").exit_code == 0


def test_an_anchor_taken_earlier_still_holds_after_more_appends(
    app: LedgerApplication, store_url: str
) -> None:
    append(app, notes("c-1", 4))
    anchor = run(store_url, "audit", "anchor").stdout.strip()
    position, head = anchor.split(":")
    assert position == "5" and len(head) == 64
    append(app, notes("c-2", 3))
    result = run(store_url, "audit", "verify", "--anchor", anchor)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("intact up to position 9, head ")
    assert lines[1] == (
        f"anchor {anchor} matches: nothing up to position 5 changed since it was taken"
    )
    # The head `verify` prints is an anchor too.
    printed = lines[0].rsplit(" ", 1)[1]
    assert run(store_url, "audit", "verify", "--anchor", f"9:{printed}").exit_code == 0


def test_an_anchor_with_another_hash_fails(app: LedgerApplication, store_url: str) -> None:
    append(app, notes("c-1", 4))
    wrong = "ab" * 32
    result = run(store_url, "audit", "verify", "--anchor", f"3:{wrong}")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"broken at position 3: expected anchor hash {wrong}, found ")
    assert "not what it was when the anchor was taken" in lines[1]


def test_from_starts_at_a_position_and_says_what_it_trusts(
    app: LedgerApplication, store_url: str
) -> None:
    append(app, notes("c-1", 9))
    full = run(store_url, "audit", "verify").stdout.splitlines()[0]
    result = run(store_url, "audit", "verify", "--from", "6", "--format", "json")
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["intact"] is True and out["checked"] == 5 and out["intact_up_to"] == 10
    assert full.endswith(out["head"])
    with owner(store_url) as o:
        assert out["start_hash"] == o.hash_of(5)
        anchor = f"8:{o.hash_of(8)}"
    human = run(store_url, "audit", "verify", "--from", "6")
    assert human.stdout.splitlines()[0] == full
    assert "trusting the stored hash before it" in human.stdout
    assert run(store_url, "audit", "verify", "--from", "6", "--anchor", anchor).exit_code == 0


def test_json_output_of_a_broken_chain(app: LedgerApplication, store_url: str) -> None:
    append(app, notes("c-1", 3))
    with owner(store_url) as o:
        o.set_state(2, bytes(o.row(2)[4]) + b" ")
        found = o.hash_of(2)
    result = run(store_url, "audit", "verify", "--format", "json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["intact"] is False and out["intact_up_to"] == 1 and out["head"] is None
    assert out["broken"]["position"] == 2
    assert out["broken"]["what"] == "chain_hash"
    assert out["broken"]["found"] == found
    assert out["broken"]["expected"] != found


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "abc"], "bad --from 'abc': expected a positive integer"),
        (["--from", "0"], "bad --from '0'"),
        (["--from", "-3"], "bad --from '-3'"),
        (["--from", "99"], "nothing to verify from position 99: the ledger ends at position 4"),
        (["--anchor", "12"], "bad anchor '12': expected POSITION:HASH"),
        (["--anchor", "3:abc"], "bad anchor '3:abc'"),
        (["--anchor", f"x:{'0' * 64}"], "bad anchor"),
        (["--anchor", f"-1:{'0' * 64}"], "bad anchor"),
        (["--from", "4", "--anchor", f"2:{'0' * 64}"], "is before --from 4"),
    ],
)
def test_bad_positions_and_anchors_are_one_clear_line_and_exit_2(
    app: LedgerApplication, store_url: str, args: list[str], message: str
) -> None:
    append(app, notes("c-1", 3))
    result = run(store_url, "audit", "verify", *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_anchor_json(app: LedgerApplication, store_url: str) -> None:
    append(app, notes("c-1", 1))
    out = json.loads(run(store_url, "audit", "anchor", "--format", "json").stdout)
    assert out["position"] == 2 and out["anchor"] == f"2:{out['hash']}"


def test_the_real_console_script(app: LedgerApplication, store_url: str) -> None:
    from tests.cli_runner import run_ledger

    append(app, notes("c-1", 2))
    anchor = run_ledger("audit", "anchor", db=store_url)
    assert anchor.returncode == 0, anchor.stderr
    verified = run_ledger("audit", "verify", "--anchor", anchor.stdout.strip(), db=store_url)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("intact up to position 3, head ")
    bad = run_ledger("audit", "verify", "--anchor", "3:zz", db=store_url)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_verification_reads_in_pages_without_losing_its_place(
    app: LedgerApplication, store_url: str, db_url: Any
) -> None:
    append(app, notes("c-1", 9) + notes("c-2", 4))
    with owner(store_url) as o:
        anchor = Anchor(7, o.hash_of(7))
        head = o.hash_of(15)
    seen: list[int] = []
    with Connection(db_url) as conn:
        intact = verify_chain(conn, anchor=anchor, page_size=3, progress=seen.append)
        from_later = verify_chain(conn, from_position=5, anchor=anchor, page_size=4)
    assert intact.intact and intact.checked == 15 and intact.last_position == 15
    assert intact.head_hash == head and seen == [3, 3, 3, 3, 3]
    assert from_later.intact and from_later.checked == 11 and from_later.head_hash == head
    with owner(store_url) as o:
        o.execute("DELETE FROM ledger_events WHERE notification_id = 10")
    with Connection(db_url) as conn:
        broken = verify_chain(conn, page_size=3)
    assert broken.broken is not None and broken.broken.position == 11
    assert broken.last_position == 9 and broken.checked == 9
