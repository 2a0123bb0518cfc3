"""Recomputing the hash chain over the events table, and anchors.

The recorders write `chain_hash` for every row (ledger.chain); this module reads
every hashed column back with plain SQL, a page at a time, recomputes the chain
from its start and reports the first row where it disagrees. Rows are immutable
and appended at increasing positions, so keyset pages (`notification_id > last`)
read a consistent chain without a long transaction; the scan stops at the head it
saw when it started, so concurrent appends cannot make it run forever.

A recomputation proves the stored rows are consistent with each other. Deleting
the newest rows leaves a consistent, shorter chain; so does rewriting rows and
recomputing every hash after them. Only an anchor (a position and its hash kept
outside the database) catches those. See docs/tamper-evidence.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.audit.common import MAX_POSITION, AuditError, fetch_page
from ledger.chain import GENESIS_HASH, chain_link
from ledger.db import Connection
from ledger.events import PAYLOADS
from ledger.reading import head_position
from ledger.stores.layout import EVENTS_TABLE

# ~2,000 rows of a few hundred bytes: a page costs about 1 MB whatever the table size.
PAGE_SIZE = 2000

# `creates_subject` is the one column the chain does not cover. It is a function
# of `topic`, which is covered, so checking that it agrees covers it too.
_CREATING_TOPICS = frozenset(name for name, p in PAYLOADS.items() if p.creates_subject)

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ANCHOR = re.compile(r"([0-9]{1,19}):(.*)")

_SELECT = (
    "SELECT notification_id, originator_id, originator_version, topic, state, "
    "event_id, customer_id, subject, creates_subject, chain_hash "
    f"FROM {EVENTS_TABLE} "
    "WHERE notification_id > ? AND notification_id <= ? ORDER BY notification_id LIMIT ?"
)


@dataclass(frozen=True)
class Anchor:
    """A position and the chain hash there, kept by an auditor outside the system."""

    position: int
    hash: str

    def __str__(self) -> str:
        return f"{self.position}:{self.hash}"


def parse_anchor(text: str) -> Anchor:
    """An anchor from its text, POSITION:HASH as `ledger audit anchor` prints it;
    AuditError if it is not one."""
    match = _ANCHOR.fullmatch(text.strip())
    if match is None or not _HEX64.fullmatch(match.group(2)):
        raise AuditError(
            f"bad anchor {text!r}: expected POSITION:HASH with a 64-digit hex hash, "
            "as printed by `ledger audit anchor`"
        )
    position = int(match.group(1))
    if position > MAX_POSITION:
        raise AuditError(f"bad anchor {text!r}: position is out of range")
    return Anchor(position, match.group(2).lower())


def current_anchor(conn: Connection) -> Anchor:
    """The stored head: the last row's position and hash (position 0 and the
    genesis hash for an empty ledger). Read, not recomputed: `verify` reports
    the recomputed head."""
    row = conn.fetchone(
        f"SELECT notification_id, chain_hash FROM {EVENTS_TABLE} "
        "ORDER BY notification_id DESC LIMIT 1"
    )
    if row is None:
        return Anchor(0, GENESIS_HASH)
    return Anchor(int(row[0]), str(row[1]))


@dataclass(frozen=True)
class ChainBreak:
    """The first place the stored ledger disagrees with its chain or the anchor.

    `what` names the compared thing (`chain_hash`, `creates_subject`,
    `anchor hash`, `event`, `row`); `expected` and `found` are its two values."""

    position: int
    what: str
    expected: str
    found: str
    reason: str

    def summary(self) -> str:
        return (
            f"broken at position {self.position}: expected {self.what} {self.expected}, "
            f"found {self.found}"
        )


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found: the positions checked, the last one found intact and the
    hash recomputed there, the anchor compared with, and the first break, if any."""

    start_hash: (
        str  # what the recomputation started from: genesis, or the stored hash before from_position
    )
    first_position: int | None  # first position checked; None when there was nothing to check
    last_position: int  # last position found intact (0: none)
    head_hash: str  # the recomputed hash at `last_position`
    checked: int
    anchor: Anchor | None
    broken: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.broken is None


def _gap_reason(previous: int, position: int) -> str:
    if position < 1:
        return f"position {position} is before the first position, 1: a row was inserted"
    if position == previous + 1:
        return (
            "this row was changed, forged or moved here, "
            "or the row before it was rewritten with a recomputed hash"
        )
    missing = (
        f"position {previous + 1} is"
        if position == previous + 2
        else f"positions {previous + 1}..{position - 1} are"
    )
    return f"{missing} missing: events were deleted (positions are assigned without gaps)"


def verify_chain(
    conn: Connection,
    *,
    from_position: int | None = None,
    anchor: Anchor | None = None,
    page_size: int = PAGE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Recompute the chain up to the current head and check `anchor` on the way.

    Without `from_position` the recomputation starts at the genesis hash. With
    it, it starts from the stored hash of the row before `from_position`, which
    it cannot check: rows before it are taken on trust unless an anchor at or
    after `from_position - 1` matches (see docs/tamper-evidence.md)."""
    stop = head_position(conn)
    previous_position = 0
    previous = bytes.fromhex(GENESIS_HASH)
    after = -(2**63)
    if from_position is not None:
        # HEAD+1 is where an incremental check starts when nothing is new: intact.
        if from_position > stop + 1:
            raise AuditError(
                f"nothing to verify from position {from_position}: "
                f"the ledger ends at position {stop}"
            )
        if anchor is not None and anchor.position < from_position - 1:
            raise AuditError.naming(
                f"the anchor at position {anchor.position} is before {{from}} {from_position}: "
                f"verify from position {anchor.position + 1} or earlier to check it",
                "from",
            )
        row = conn.fetchone(
            f"SELECT notification_id, chain_hash FROM {EVENTS_TABLE} "
            "WHERE notification_id < ? ORDER BY notification_id DESC LIMIT 1",
            (from_position,),
        )
        if row is not None:
            previous_position = int(row[0])
            previous = _stored_digest(row[1])
        after = from_position - 1
    start_hash = previous.hex()
    first: int | None = None
    checked = 0

    def report(broken: ChainBreak | None) -> VerifyReport:
        return VerifyReport(
            start_hash=start_hash,
            first_position=first,
            last_position=previous_position,
            head_hash=previous.hex(),
            checked=checked,
            anchor=anchor,
            broken=broken,
        )

    anchor_pending = anchor is not None
    if anchor is not None and anchor.position <= previous_position:
        # The anchor is the starting point itself (genesis, or the row before from_position).
        anchor_pending = False
        if anchor.position < previous_position:
            return report(_anchor_missing(anchor, previous_position))
        if start_hash != anchor.hash:
            return report(_anchor_mismatch(anchor, start_hash))

    while True:
        rows = fetch_page(conn, _SELECT, (after, stop, page_size))
        for row in rows:
            (
                position,
                oid,
                version,
                topic,
                state,
                event_id,
                customer_id,
                subject,
                creates,
                stored,
            ) = row
            if first is None:
                first = position
            try:
                digest = chain_link(
                    previous,
                    position,
                    oid,
                    version,
                    topic,
                    bytes(state),
                    event_id,
                    customer_id,
                    subject,
                )
            except (TypeError, AttributeError, ValueError):
                return report(
                    ChainBreak(
                        position,
                        "row",
                        "with every hashed column",
                        "missing or mistyped columns",
                        "the row cannot be hashed: it was not written by the ledger",
                    )
                )
            expected = digest.hex()
            if stored != expected or position < 1:
                return report(
                    ChainBreak(
                        position,
                        "chain_hash",
                        expected,
                        _show(stored),
                        _gap_reason(previous_position, position),
                    )
                )
            if bool(creates) != (topic in _CREATING_TOPICS):
                return report(
                    ChainBreak(
                        position,
                        "creates_subject",
                        f"{_bool(topic in _CREATING_TOPICS)} for {topic}",
                        _bool(bool(creates)),
                        "the creates_subject column was changed",
                    )
                )
            if anchor_pending:
                assert anchor is not None
                if position == anchor.position:
                    anchor_pending = False
                    if expected != anchor.hash:
                        return report(_anchor_mismatch(anchor, expected))
                elif position > anchor.position:
                    return report(_anchor_missing(anchor, previous_position))
            previous, previous_position = digest, position
            checked += 1
        if progress is not None and rows:
            progress(len(rows))
        if len(rows) < page_size:
            break
        after = rows[-1][0]
    if anchor_pending:
        assert anchor is not None
        return report(_anchor_missing(anchor, previous_position))
    return report(None)


def _anchor_mismatch(anchor: Anchor, found: str) -> ChainBreak:
    return ChainBreak(
        anchor.position,
        "anchor hash",
        anchor.hash,
        found,
        "the ledger up to the anchor's position is not what it was when the anchor was taken",
    )


def _anchor_missing(anchor: Anchor, last: int) -> ChainBreak:
    return ChainBreak(
        anchor.position,
        "event",
        "at the anchor's position",
        f"none: the ledger ends at position {last}"
        if last < anchor.position
        else "none: that position is missing",
        "events the anchor covers were deleted",
    )


def _stored_digest(value: Any) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        # A mangled stored hash cannot seed the chain; an impossible digest makes
        # the first checked row report the break.
        return b"\xff" * 32


def _show(value: Any) -> str:
    return "NULL" if value is None else str(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"
