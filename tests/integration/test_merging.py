"""Merging customers and undoing it (docs/merging.md), on both stores.

The reference for every tab is a control ledger that never saw a merge: the
same events appended to a fresh store, each on the stream it was stored on.
A merged priority customer's tab must hold exactly the union of the control's
tabs of the merged customers, in the tab's order; after an undo each
customer's tabs must equal the control's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.demo import demo_events
from ledger.normalise import set_default_region
from ledger.rights import ALLOW_ALL, RightsPolicy
from services.bootstrap import prepare_store
from services.customers import erase_customer, export_customer, find_customers
from services.duplicates import find_duplicates
from services.errors import Category, ServiceError
from services.merging import (
    MergeRequest,
    UnmergeRequest,
    merge_customers,
    preview_merge,
    resolve,
    unmerge_customers,
)
from services.tabs import TABS, card_header, tab_request, tab_rows
from tests.cli_runner import ledger_cli
from tests.factories import append_ok, event

P, A = "cust-1001", "cust-1002"  # Anna Petrova, Ben Okafor: no shared phone or e-mail
MERGE_TYPES = {"customer.merged", "customer.absorbed", "customer.unmerged", "customer.released"}


@pytest.fixture(autouse=True)
def default_region() -> Iterator[None]:
    set_default_region(None)
    yield
    set_default_region(None)


def tab_items(url: str, customer_id: str, tab: str) -> dict[str, Any]:
    """Every page of a tab (two items a page, so pages cross customers)."""
    items: list[Any] = []
    cursor = None
    with Connection(url) as conn:
        prepare_store(conn)
        while True:
            rows = tab_rows(conn, tab_request(customer_id, tab, limit=2, cursor=cursor))
            items.extend(rows["items"])
            cursor = rows["next_cursor"]
            if cursor is None:
                break
    rest = {k: v for k, v in rows.items() if k not in ("items", "next_cursor")}
    if tab == "timeline":
        # Positions are the ledger's own: the control ledger holds no merge events.
        items = [
            {k: v for k, v in i.items() if k != "position"}
            for i in items
            if i["type"] not in MERGE_TYPES
        ]
    return {**rest, "items": items}


def every_tab(url: str, customer_id: str) -> dict[str, dict[str, Any]]:
    return {tab: tab_items(url, customer_id, tab) for tab in TABS}


def merge(app: LedgerApplication, **kw: Any) -> Any:
    request = MergeRequest(
        kw.pop("customer_id", P),
        tuple(kw.pop("absorb", (A,))),
        kw.pop("user_id", "u-1"),
        kw.pop("reason", "one person, two cards"),
        **kw,
    )
    policy: RightsPolicy = ALLOW_ALL
    with Connection(app.url) as conn:
        prepare_store(conn)
        return merge_customers(app, conn, policy, request)


def unmerge(app: LedgerApplication, released: str = A, priority: str = P) -> Any:
    with Connection(app.url) as conn:
        prepare_store(conn)
        return unmerge_customers(
            app, conn, ALLOW_ALL, UnmergeRequest(priority, released, "u-1", "two people")
        )


def _sort_key(tab: str, item: dict[str, Any]) -> Any:
    times = {
        "timeline": "occurred_at",
        "tasks": "created_at",
        "visits": "started_at",
        "segments": "occurred_at",
        "chats": "started_at",
        "emails": "sent_at",
        "orders": "created_at",
        "card": "occurred_at",
    }
    return item[times[tab]]


def folded(tab: str, mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The reference fold of two customers' tabs: every item of both, newest first."""
    items = mine["items"] + theirs["items"]
    answer = {**mine}
    if tab == "segments":
        names = {m["segment_id"]: m for m in theirs["member_of"] + mine["member_of"]}
        answer["member_of"] = [names[s] for s in sorted(names)]
        answer["memberships"] = sorted(names)
    if tab == "emails":
        newest = max(items, key=lambda i: i["sent_at"], default=None)
        answer["last_email"] = (
            {"message_id": newest["message_id"], "opened": newest["open_count"] > 0}
            if newest
            else None
        )
    answer["items"] = items
    return answer


def same_items(tab: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    """Equal as multisets, and `got` in the tab's order (newest first)."""
    dump = sorted(json.dumps(i, sort_keys=True) for i in got["items"])
    assert dump == sorted(json.dumps(i, sort_keys=True) for i in want["items"]), tab
    times = [_sort_key(tab, i) for i in got["items"]]
    assert times == sorted(times, reverse=True), tab
    rest = {k: v for k, v in got.items() if k != "items"}
    assert rest == {k: v for k, v in want.items() if k != "items"}, tab


@pytest.fixture
def control(tmp_path: Path) -> Iterator[LedgerApplication]:
    application = LedgerApplication(parse_database_url(f"sqlite:///{tmp_path / 'control.db'}"))
    yield application
    application.close()


def test_merge_folds_every_tab_and_undo_restores_each_customer(
    app: LedgerApplication, control: LedgerApplication
) -> None:
    events = demo_events()
    append_ok(app, events)
    append_ok(control, events)
    before = {c: every_tab(control.url, c) for c in (P, A)}

    outcome = merge(app, confirm=True, keep={"name": A})
    assert outcome.applied and outcome.absorbed == (A,)
    assert outcome.moved["tasks"] == len(before[A]["tasks"]["items"])
    assert outcome.card["name"] == "Ben Okafor"

    # Every tab of the priority is the union of both customers' tabs.
    merged = every_tab(app.url, P)
    for tab in TABS:
        same_items(tab, merged[tab], folded(tab, before[P][tab], before[A][tab]))
    with Connection(app.url) as conn:
        prepare_store(conn)
        header = card_header(conn, P)
        assert header.name == "Ben Okafor"  # the kept value
        assert header.email == "anna@example.com"  # the priority's, by default
        assert header.counts["tasks"] == len(merged["tasks"]["items"])
        assert resolve(conn, A) == P and resolve(conn, P) is None

    # Events sent later under the absorbed id are accepted, keep its id and
    # show on the priority's card; an action under the priority's id on a task
    # of the absorbed customer is stored on the absorbed customer's stream.
    later = [
        event(
            "note.added",
            A,
            {"note_id": "late-note", "text": "Called back"},
            occurred_at="2026-12-01T09:00:00Z",
        ),
        event("task.completed", P, {"task_id": f"{A}-t0"}, occurred_at="2026-12-01T09:05:00Z"),
        event("task.completed", A, {"task_id": f"{P}-t2"}, occurred_at="2026-12-01T09:06:00Z"),
    ]
    append_ok(app, later)
    stored_on = [A, A, P]  # each event on the stream of the customer owning its subject
    append_ok(control, [{**e, "customer_id": c} for e, c in zip(later, stored_on, strict=True)])
    notes = [i for i in tab_items(app.url, P, "timeline")["items"] if i["type"] == "note.added"]
    assert "Called back" in [i["data"]["text"] for i in notes]
    tasks = {t["task_id"]: t["status"] for t in tab_items(app.url, P, "tasks")["items"]}
    assert tasks[f"{A}-t0"] == "completed" and tasks[f"{P}-t2"] == "completed"

    unmerge(app)
    for c in (P, A):
        after = every_tab(app.url, c)
        want = every_tab(control.url, c)
        for tab in TABS:
            assert after[tab] == want[tab], (c, tab)
    with Connection(app.url) as conn:
        prepare_store(conn)
        assert card_header(conn, P).name == "Anna Petrova"
        assert resolve(conn, A) is None


def test_the_preview_stores_nothing_and_says_what_would_happen(app: LedgerApplication) -> None:
    append_ok(app, demo_events())
    with Connection(app.url) as conn:
        prepare_store(conn)
        head = conn.fetchone("SELECT COUNT(*) FROM ledger_events")
        outcome = preview_merge(conn, MergeRequest(P, (A,), "u-1", dry_run=True))
        assert conn.fetchone("SELECT COUNT(*) FROM ledger_events") == head
    assert not outcome.applied and outcome.needs_confirmation
    assert "share no phone number or e-mail address" in (outcome.why or "")
    fields = {c.field: c.values for c in outcome.conflicts}
    assert fields["name"] == {P: "Anna Petrova", A: "Ben Okafor"}
    assert outcome.card["name"] == "Anna Petrova"  # the priority's unless kept otherwise
    assert outcome.moved["timeline"] > 0


def test_a_merge_without_a_shared_contact_needs_a_confirmation(app: LedgerApplication) -> None:
    append_ok(app, demo_events())
    with pytest.raises(ServiceError) as refused:
        merge(app)
    assert refused.value.category is Category.CONFLICT
    assert refused.value.code == "confirmation_needed"
    with Connection(app.url) as conn:
        prepare_store(conn)
        assert resolve(conn, A) is None


def _cards(app: LedgerApplication, cards: dict[str, dict[str, str]]) -> None:
    append_ok(app, [event("customer.created", c, {"card": card}) for c, card in cards.items()])


def test_customers_sharing_a_phone_in_any_notation_merge_without_confirmation(
    app: LedgerApplication,
) -> None:
    _cards(
        app,
        {
            "c-1": {"name": "Anna Petrova", "phone": "+49 30 1234567"},
            "c-2": {"name": "Anna P.", "phone": "030 123 4567"},
            "c-3": {"name": "Anna Petrova", "email": "anna@example.com"},
        },
    )
    with Connection(app.url) as conn:
        prepare_store(conn)
        assert [c.customer_id for c in find_duplicates(conn, "c-1").items] == ["c-2"]
    outcome = merge(app, customer_id="c-1", absorb=["c-2"])
    assert outcome.applied and not outcome.needs_confirmation
    with Connection(app.url) as conn:
        prepare_store(conn)
        # The merged customers are one: no longer each other's duplicate, and a
        # search by either's phone finds the priority only.
        assert find_duplicates(conn, "c-1").items == ()
        found = find_customers(conn, "030 1234567").as_json()["items"]
        assert [i["customer_id"] for i in found] == ["c-1"]


@pytest.mark.parametrize(
    ("priority", "absorb", "code"),
    [
        ("c-1", ["c-1"], "same_customer"),
        ("c-2", ["c-3"], "customer_absorbed"),  # into an absorbed customer
        ("c-3", ["c-2"], "already_absorbed"),
        ("c-3", ["c-1"], "holds_merged"),  # a cycle, or a chain
        ("c-1", ["c-3", "c-3"], "listed_twice"),
    ],
)
def test_refusals_are_one_line_and_store_nothing(
    app: LedgerApplication, priority: str, absorb: list[str], code: str
) -> None:
    _cards(app, {c: {"name": c} for c in ("c-1", "c-2", "c-3")})
    merge(app, customer_id="c-1", absorb=["c-2"], confirm=True)
    with Connection(app.url) as conn:
        prepare_store(conn)
        head = conn.fetchone("SELECT COUNT(*) FROM ledger_events")
    with pytest.raises(ServiceError) as refused:
        merge(app, customer_id=priority, absorb=absorb, confirm=True)
    assert refused.value.category is Category.CONFLICT
    assert refused.value.code == code
    assert "\n" not in refused.value.message
    with Connection(app.url) as conn:
        prepare_store(conn)
        assert conn.fetchone("SELECT COUNT(*) FROM ledger_events") == head


def test_an_unknown_customer_is_not_found(app: LedgerApplication) -> None:
    _cards(app, {"c-1": {"name": "Anna"}})
    with pytest.raises(ServiceError) as refused:
        merge(app, customer_id="c-1", absorb=["nobody"], confirm=True)
    assert refused.value.category is Category.NOT_FOUND
    assert refused.value.code == "customer_missing"


def test_the_domain_refuses_what_the_service_did_not_see(app: LedgerApplication) -> None:
    """Appended directly (as a producer or a racing writer would), the events
    meet the same rules."""
    _cards(app, {c: {"name": c} for c in ("c-1", "c-2", "c-3")})
    merge(app, customer_id="c-1", absorb=["c-2"], confirm=True)
    from tests.factories import append_events

    report = append_events(
        app,
        [
            event("customer.merged", "c-3", {"absorbed": ["c-2"], "reason": "again"}),
            event("customer.absorbed", "c-2", {"into": "c-3", "reason": "again"}),
        ],
    )
    assert report.appended == 0
    codes = {e.code for r in report.rejected for e in r.errors}
    assert codes == {"already_absorbed"}


def test_concurrent_merges_of_one_customer_leave_exactly_one(app: LedgerApplication) -> None:
    _cards(app, {c: {"name": c} for c in ("c-1", "c-2", "c-3")})
    outcomes: list[Any] = []

    def attempt(priority: str) -> None:
        other = LedgerApplication(app.url)
        try:
            request = MergeRequest(priority, ("c-3",), "u-1", "race", confirm=True)
            with Connection(app.url) as conn:
                prepare_store(conn)
                outcomes.append(merge_customers(other, conn, ALLOW_ALL, request))
        except ServiceError as exc:
            outcomes.append(exc)
        finally:
            other.close()

    threads = [threading.Thread(target=attempt, args=(p,)) for p in ("c-1", "c-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = [o for o in outcomes if not isinstance(o, ServiceError)]
    refused = [o for o in outcomes if isinstance(o, ServiceError)]
    assert len(applied) == 1 and len(refused) == 1
    assert refused[0].category is Category.CONFLICT
    with Connection(app.url) as conn:
        prepare_store(conn)
        assert resolve(conn, "c-3") == applied[0].customer_id
        absorbed = conn.fetchall(
            "SELECT COUNT(*) FROM ledger_events WHERE topic = 'customer.absorbed'"
        )
        assert absorbed[0][0] == 1


def test_erasing_a_merged_customer_erases_every_customer_it_absorbed(
    app: LedgerApplication,
) -> None:
    _cards(app, {c: {"name": f"Name {c}"} for c in ("c-1", "c-2", "c-3")})
    merge(app, customer_id="c-1", absorb=["c-2"], confirm=True)
    erase_customer(app, ALLOW_ALL, "c-2", "customer asked", "u-9")
    assert app.customer("c-1").erased and app.customer("c-2").erased
    assert not app.customer("c-3").erased


def test_undo_window(app: LedgerApplication, monkeypatch: pytest.MonkeyPatch) -> None:
    _cards(app, {c: {"name": c} for c in ("c-1", "c-2")})
    merge(app, customer_id="c-1", absorb=["c-2"], confirm=True)
    monkeypatch.setenv("LEDGER_UNDO_WINDOW", "0s")
    with pytest.raises(ServiceError) as refused:
        unmerge(app, "c-2", "c-1")
    assert refused.value.code == "undo_window_passed"
    monkeypatch.setenv("LEDGER_UNDO_WINDOW", "30d")
    unmerge(app, "c-2", "c-1")
    with pytest.raises(ServiceError) as again:
        unmerge(app, "c-2", "c-1")
    assert again.value.code == "not_merged"


def test_cli_merge_preview_merge_tab_redirect_audit_and_unmerge(
    app: LedgerApplication, store_url: str
) -> None:
    _cards(
        app,
        {
            "c-1": {"name": "Anna Petrova", "phone": "+49 30 1234567"},
            "c-2": {"name": "Anna P.", "phone": "030 1234567"},
        },
    )
    append_ok(app, [event("note.added", "c-2", {"note_id": "n-2", "text": "From the shop"})])
    url = store_url
    preview = ledger_cli("customers", "merge", "c-1", "c-2", "--as", "u-7", "--dry-run", db=url)
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.startswith("preview: merge c-2 into c-1\n")
    assert "differs: name (c-1: Anna Petrova; c-2: Anna P.); keeps Anna Petrova" in preview.stdout
    unreasoned = ledger_cli("customers", "merge", "c-1", "c-2", "--as", "u-7", db=url)
    assert unreasoned.returncode != 0 and "give a reason" in unreasoned.stderr
    done = ledger_cli(
        "customers", "merge", "c-1", "c-2", "--as", "u-7", "--reason", "same phone",
        "--keep", "name=c-2", "--format", "json", db=url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["applied"] is True and answer["card"]["name"] == "Anna P."
    assert answer["conflicts"] == [
        {"field": "name", "values": {"c-1": "Anna Petrova", "c-2": "Anna P."}}
    ]
    shown = ledger_cli("tab", "c-2", "timeline", "--format", "json", db=url)
    assert shown.returncode == 0
    assert shown.stderr == "customer c-2 is merged into c-1: showing c-1\n"
    timeline = json.loads(shown.stdout)
    assert timeline["customer_id"] == "c-1"
    assert "note.added" in [i["type"] for i in timeline["items"]]
    summaries = {i["type"]: i["summary"] for i in timeline["items"]}
    # The merge's line names the customers by their cards' names, not by id.
    assert (
        summaries["customer.merged"] == "Merged with Anna P. (same phone); kept name from Anna P."
    )
    again = ledger_cli(
        "customers", "merge", "c-2", "c-1", "--as", "u-7", "--reason", "x", "--confirm", db=url
    )
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0  # one line
    for customer, kind in (("c-1", "customer.merged"), ("c-2", "customer.absorbed")):
        history = ledger_cli("audit", "history", "--customer", customer, "--format", "json", db=url)
        found = [json.loads(line) for line in history.stdout.splitlines() if kind in line]
        assert len(found) == 1
        assert found[0]["actor"]["id"] == "u-7" and found[0]["data"]["reason"] == "same phone"
    undone = ledger_cli(
        "customers", "unmerge", "c-1", "c-2", "--as", "u-7", "--reason", "two people", db=url
    )
    assert undone.returncode == 0, undone.stderr
    assert undone.stdout == "c-2 is no longer merged into c-1\n"
    own = ledger_cli("tab", "c-2", "timeline", "--format", "json", db=url)
    assert own.stderr == "" and json.loads(own.stdout)["customer_id"] == "c-2"


def test_an_access_export_of_a_merged_customer_holds_each_stream(app: LedgerApplication) -> None:
    _cards(app, {"c-1": {"name": "Anna"}, "c-2": {"name": "Anna P."}})
    append_ok(app, [event("note.added", "c-2", {"note_id": "n-2", "text": "Shop note"})])
    merge(app, customer_id="c-1", absorb=["c-2"], confirm=True)
    with Connection(app.url) as conn:
        prepare_store(conn)
        export = export_customer(conn, "c-1")
    streams = [e["customer_id"] for e in export["events"]]
    assert streams.count("c-2") == 3  # created, the note, absorbed
    positions = [e["position"] for e in export["events"]]
    assert positions == sorted(positions)
    assert export["summary"]["card"]["customer_id"] == "c-1"
