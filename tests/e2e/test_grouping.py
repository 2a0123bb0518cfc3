"""Group commit of concurrent one-event appends: shared transactions, own outcomes."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ledger.appending.report import AppendReport
from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.grouping import AppendGroups, GroupStore
from ledger.reading import iter_rows
from ledger.rights import ALLOW_ALL
from services.appending import append_with
from tests.factories import append_to_url, event
from tests.http_support import serve_in_thread


def _note(customer: str, i: int, **extra: Any) -> dict[str, Any]:
    return event("note.added", customer, {"note_id": f"n{i}", "text": f"note {i}"}, **extra)


def _stored(url: str) -> dict[int, dict[str, Any]]:
    """Every stored envelope as a reader sees it (personal values decrypted)."""
    with Connection(parse_database_url(url)) as conn:
        return {row.position: json.loads(row.state) for row in iter_rows(conn)}


def _append_together(
    store_url: str, calls: list[tuple[str, bool]]
) -> tuple[list[AppendReport], int]:
    """Each (event JSON, skip_invalid) appended one event a call, every call in its
    own thread and all at once, through one AppendGroups with a long window (every
    call arrives within it, so they share groups): the outcomes in call order and
    the number of groups committed."""
    app = LedgerApplication(parse_database_url(store_url))
    groups = AppendGroups(GroupStore(app, lambda: ALLOW_ALL, append_with), window_s=0.5)
    start = threading.Barrier(len(calls))

    def call(c: tuple[str, bool]) -> AppendReport:
        start.wait()
        return groups.append_one(c[0], skip_invalid=c[1])

    try:
        with ThreadPoolExecutor(len(calls)) as pool:
            outcomes = list(pool.map(call, calls))
    finally:
        groups.close()
        app.close()
    return outcomes, groups.groups


def test_each_caller_gets_its_own_outcome_from_a_shared_transaction(store_url: str) -> None:
    created = [event("customer.created", f"c{i}", {"card": {"name": "Ann"}}) for i in range(4)]
    old = _note("c0", 999)
    gone = event("customer.created", "gone", {"card": {"name": "Bo"}})
    erasure = event("customer.erased", "gone", {"reason": "asked", "requested_by": "dpo"})
    append_to_url(store_url, [*created, old, gone, erasure])
    # Erasing an erased customer is a no-op counted as a duplicate; without an
    # event id, nothing but the group's report says it was not stored.
    erased_again = {k: v for k, v in erasure.items() if k != "event_id"}
    good = [_note(f"c{i % 4}", i) for i in range(24)]
    no_id = [_note("c1", 100 + i) for i in range(3)]
    for e in no_id:
        del e["event_id"]
    twice = _note("c2", 200)
    bad = [
        _note("nobody", 300),  # no such customer: a rule rejects it
        {**_note("c3", 301), "type": "note.unknown"},  # a contract rejects it
    ]
    calls: list[tuple[str, dict[str, Any], bool]] = [
        *(("good", e, False) for e in good),
        *(("no_id", e, False) for e in no_id),
        ("twice", twice, False),
        ("twice", twice, False),
        ("old", old, False),
        ("erased_again", erased_again, False),
        ("bad", bad[0], False),
        ("bad_skip", bad[1], True),
    ]
    outcomes, committed = _append_together(store_url, [(json.dumps(c[1]), c[2]) for c in calls])
    assert committed < len(calls) // 2  # grouped, not one transaction each
    stored = _stored(store_url)
    by_kind: dict[str, list[AppendReport]] = {}
    for (kind, e, _), outcome in zip(calls, outcomes, strict=True):
        by_kind.setdefault(kind, []).append(outcome)
        if outcome.appended:
            assert outcome.first_position == outcome.last_position
            assert outcome.first_position is not None
            mine = stored[outcome.first_position]
            assert mine["data"] == e["data"]  # the position answered is this event's
            if "event_id" in e:
                assert mine["event_id"] == e["event_id"]
    assert all(o.appended == 1 and o.ok for o in by_kind["good"] + by_kind["no_id"])
    assert sorted(o.appended for o in by_kind["twice"]) == [0, 1]
    assert sorted(o.duplicates for o in by_kind["twice"]) == [0, 1]
    assert by_kind["old"][0].duplicates == 1 and by_kind["old"][0].appended == 0
    (again,) = by_kind["erased_again"]
    assert (again.appended, again.duplicates, again.ok) == (0, 1, True)
    (rule,) = by_kind["bad"]
    assert not rule.stored and rule.rejected[0].line == 0
    assert rule.rejected[0].event_id == bad[0]["event_id"]
    (contract,) = by_kind["bad_skip"]
    assert contract.stored and contract.rejected[0].errors[0].field == "type"
    # Exactly the accepted events are stored, each once.
    assert len(stored) == len(created) + 3 + len(good) + len(no_id) + 1
    assert not {e["event_id"] for e in bad} & {s["event_id"] for s in stored.values()}


def test_concurrent_single_event_posts_over_http(store_url: str) -> None:
    append_to_url(store_url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    events = [_note("c1", i) for i in range(40)]
    bad = _note("c1", 99, occurred_at="not a time")
    with serve_in_thread(store_url) as client:

        def post(e: dict[str, Any]) -> Any:
            return client.post("/v1/events", json=e)

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(post, [*events, bad]))
    *ok, refused = answers
    assert all(a.status_code == 200 for a in ok), [a.text for a in ok if a.status_code != 200]
    bodies = [a.json() for a in ok]
    assert all(b["appended"] == 1 and b["rejected"] == [] for b in bodies)
    positions = [b["first_position"] for b in bodies]
    assert len(set(positions)) == len(events)
    stored = _stored(store_url)
    assert [stored[p]["event_id"] for p in positions] == [e["event_id"] for e in events]
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["errors"][0]["index"] == 0 and problem["errors"][0]["field"] == "occurred_at"
    assert bad["event_id"] not in {s["event_id"] for s in stored.values()}
    # A retry of a stored event is its duplicate, as before.
    with serve_in_thread(store_url) as client:
        again = client.post("/v1/events", json=events[0])
    assert again.json()["duplicates"] == 1 and again.json()["appended"] == 0


def test_a_group_without_stored_duplicates_answers_from_its_report(store_url: str) -> None:
    # New events and one repeated within the group, nothing stored before: each
    # caller's outcome comes from the report alone (no lookup), and must still be
    # its own position, or its duplicate.
    append_to_url(store_url, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    fresh = [_note("c1", i) for i in range(12)]
    repeated = _note("c1", 50)
    raws = [json.dumps(e) for e in [*fresh, repeated, repeated]]
    outcomes, _ = _append_together(store_url, [(raw, False) for raw in raws])
    stored = _stored(store_url)
    for raw, outcome in zip(raws[: len(fresh)], outcomes, strict=False):
        assert outcome.appended == 1 and outcome.first_position is not None
        assert stored[outcome.first_position]["event_id"] == json.loads(raw)["event_id"]
    twice = outcomes[len(fresh) :]
    assert sorted((o.appended, o.duplicates) for o in twice) == [(0, 1), (1, 0)]
    (kept,) = [o for o in twice if o.appended]
    assert kept.first_position is not None
    assert stored[kept.first_position]["event_id"] == repeated["event_id"]
    assert len(stored) == 1 + len(fresh) + 1
