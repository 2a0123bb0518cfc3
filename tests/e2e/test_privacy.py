"""Personal data (docs/privacy.md): stored encrypted per customer, readable through
every reader, erased for good by destroying the key, while `audit verify` holds.
Real stores, the real CLI; plaintext is looked for in the SQLite file's bytes and
in every PostgreSQL row."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result

from consumers.last_contact import LastContact, last_contact_of
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.keystore import keyring
from ledger.keystore.keyring import Keyring
from ledger.keystore.master import new_master_key_file
from ledger.reading import iter_rows, read_rows
from relay.errors import RelayFatal
from relay.messages import build_message
from tests.audit_support import owner, run
from tests.factories import event, ndjson
from tests.http_support import make_keys, serve_in_thread

# Every personal value of c-1 carries this, so a byte search finds any plaintext copy.
SECRET = "ZQXSECRET"
OTHER = "ZQXOTHER"


def story(customer: str, mark: str) -> list[dict[str, Any]]:
    """One customer with every event type that has personal values."""

    def ev(kind: str, data: dict[str, Any], minute: int) -> dict[str, Any]:
        return event(kind, customer, data, occurred_at=f"2026-10-01T10:{minute:02d}:00Z")

    return [
        ev("customer.created", {"card": {"name": f"{mark} Anna", "phone": f"+49-{mark}"}}, 0),
        ev(
            "customer.card_changed",
            {"changes": [{"field": "email", "old": None, "new": f"{mark}@example.com"}]},
            1,
        ),
        ev("order.created", {"order_id": f"{customer}-o1", "status": "new", "total": "10.00"}, 2),
        ev(
            "order.changed",
            {
                "order_id": f"{customer}-o1",
                "changes": [
                    {"field": "status", "old": "new", "new": "paid"},
                    {"field": "delivery_address", "old": None, "new": f"{mark} street 1"},
                ],
            },
            3,
        ),
        ev("email.sent", {"message_id": f"{customer}-m1", "subject": f"Hi {mark}", "to": mark}, 4),
        ev("email.clicked", {"message_id": f"{customer}-m1", "url": f"https://x/{mark}"}, 5),
        ev(
            "sms.sent",
            {"message_id": f"{customer}-s1", "to": f"+1{mark}", "text": f"sms {mark}"},
            6,
        ),
        # Its summary names the SMS by the text sent: a personal value the
        # timeline keeps about the SMS (sealed like the text itself).
        ev("sms.delivered", {"message_id": f"{customer}-s1"}, 6),
        ev(
            "call.logged",
            {
                "call_id": f"{customer}-c1",
                "direction": "inbound",
                "result": "answered",
                "duration_s": 30,
                "phone": f"+2{mark}",
                "recording_url": f"https://rec/{mark}",
            },
            7,
        ),
        ev("chat.started", {"dialog_id": f"{customer}-d1", "channel": "telegram"}, 8),
        ev(
            "chat.message",
            {
                "dialog_id": f"{customer}-d1",
                "message_id": "x1",
                "direction": "inbound",
                "text": f"chat {mark}",
            },
            9,
        ),
        ev(
            "task.created",
            {"task_id": f"{customer}-t1", "title": f"call {mark}", "text": f"task {mark}"},
            10,
        ),
        ev(
            "task.edited",
            {
                "task_id": f"{customer}-t1",
                "changes": [{"field": "title", "old": f"call {mark}", "new": f"ring {mark}"}],
            },
            11,
        ),
        ev("note.added", {"note_id": f"{customer}-n1", "text": f"note {mark}"}, 12),
        ev(
            "file.attached",
            {
                "file_id": f"{customer}-f1",
                "name": f"{mark}.pdf",
                "size_bytes": 3,
                "url": f"https://f/{mark}",
            },
            13,
        ),
        ev(
            "visit.recorded",
            {
                "visit_id": f"{customer}-v1",
                "source": "ads",
                "channel": "ppc",
                "duration_s": 5,
                "landing_page": f"https://l/{mark}",
            },
            14,
        ),
        ev("segment.joined", {"segment_id": "vip", "segment_name": "VIP"}, 15),
    ]


def cli(url: str, *args: str, stdin: str | None = None) -> Result:
    return run(url, *args) if stdin is None else _with_input(url, stdin, *args)


def _with_input(url: str, stdin: str, *args: str) -> Result:
    from click.testing import CliRunner

    from cli.main import ledger

    return CliRunner().invoke(ledger, ["--db", url, *args], input=stdin)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def url(store_url: str) -> str:
    ok(cli(store_url, "append", "-", stdin=ndjson(story("c-1", SECRET) + story("c-2", OTHER))))
    return store_url


TABS = ("timeline", "card", "orders", "emails", "tasks", "chats", "visits", "segments")


def every_reader(url: str, customer: str) -> str:
    """What every reader shows of `customer`, as one text."""
    out = [ok(cli(url, "tab", customer, tab, "--format", "json")) for tab in TABS]
    out.append(ok(cli(url, "audit", "history", "--customer", customer, "--format", "json")))
    with Connection(parse_database_url(url)) as conn:
        out += [build_message(row)[1].decode() for row in iter_rows(conn)]
    return "\n".join(out)


def stored_bytes(url: str) -> bytes:
    """Everything the ledger's database holds: the SQLite file and its WAL, or every
    row of every table of the PostgreSQL schema as text."""
    db = parse_database_url(url)
    if db.kind == "sqlite":
        with sqlite3.connect(db.path) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        files = [Path(db.path), Path(db.path + "-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    with psycopg.connect(db.conninfo(), autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (db.schema,),
            )
        ]
        assert "ledger_events" in tables and "ledger_keys" in tables
        text = [
            str(row)
            for t in tables
            for row in conn.execute(f'SELECT t::text FROM "{db.schema}"."{t}" t')
        ]
    return "\n".join(text).encode()


def test_personal_values_are_stored_encrypted_and_read_normally(url: str) -> None:
    shown = every_reader(url, "c-1")
    for value in (
        f"{SECRET} Anna",
        f"{SECRET}@example.com",
        f"{SECRET} street 1",
        f"sms {SECRET}",
        f"SMS “sms {SECRET}” delivered",
        f"ring {SECRET}",
        f"note {SECRET}",
        f"https://l/{SECRET}",
    ):
        assert value in shown
    stored = stored_bytes(url)
    assert SECRET.encode() not in stored and OTHER.encode() not in stored
    # What is not personal stays readable in the stored rows (accounting, structure).
    assert b'"paid"' in stored or b"paid" in stored
    assert b"c-1-o1" in stored


@contextmanager
def key_queries(url: str) -> Iterator[list[str]]:
    """The statements a fresh keyring sends to the key table meanwhile."""
    Keyring.forget_all()
    ring = Keyring.for_url(parse_database_url(url))
    keys_conn = ring._store()
    asked: list[str] = []
    execute = keys_conn.execute

    def counting(statement: str, params: Any = ()) -> Any:
        if "ledger_keys" in statement:
            asked.append(statement)
        return execute(statement, params)

    keys_conn.execute = counting  # type: ignore[method-assign]
    try:
        yield asked
    finally:
        keys_conn.execute = execute  # type: ignore[method-assign]
        Keyring.forget_all()


def test_a_batch_of_rows_asks_the_key_table_once(url: str) -> None:
    """The relay reads rows a thousand at a time: their customers' keys come in one
    query, not one per customer, and the rows still read in the clear."""
    with key_queries(url) as asked, Connection(parse_database_url(url)) as conn:
        rows = read_rows(conn, 0, 1000)
        shown = b"".join(row.state for row in rows)
    assert len(asked) == 1, asked
    assert f"note {SECRET}".encode() in shown and f"note {OTHER}".encode() in shown


def test_a_batch_read_late_in_the_key_cache_period_still_asks_once(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key cache is dropped every CACHE_SECONDS. A batch read late in a period
    starts a new one, so the period does not end while the batch is revealed (each
    customer after that point would be looked up alone)."""
    clock = [1000.0]
    monkeypatch.setattr(keyring.time, "monotonic", lambda: clock[0])
    with key_queries(url) as asked, Connection(parse_database_url(url)) as conn:
        clock[0] += keyring.CACHE_SECONDS * 0.9
        rows = read_rows(conn, 0, 1000)
        clock[0] += keyring.CACHE_SECONDS * 0.5  # the old period has ended by now
        shown = b"".join(row.state for row in rows)
        assert len(asked) == 1, asked
        clock[0] += keyring.CACHE_SECONDS * 0.6  # and now the new one
        assert read_rows(conn, 0, 1000)[0].state
    assert len(asked) == 2, asked
    assert f"note {SECRET}".encode() in shown and f"note {OTHER}".encode() in shown


def test_erasure_reaches_every_reader_and_leaves_the_chain_intact(url: str) -> None:
    ok(cli(url, "tab", "c-1", "timeline"))  # read models hold c-1 before the erasure
    anchor = ok(cli(url, "audit", "anchor")).strip()
    answer = json.loads(
        ok(
            cli(
                url, "customers", "erase", "c-1", "--reason", "art. 17", "--yes", "--format", "json"
            )
        )
    )
    assert answer["erased"] is True

    shown = every_reader(url, "c-1")
    assert SECRET not in shown
    assert "[erased]" in shown
    # Not personal: still there for reports and the audit trail.
    assert '"paid"' in shown and "c-1-o1" in shown and "customer.erased" in shown
    assert OTHER in every_reader(url, "c-2")

    # A rebuilt read model knows nothing more.
    ok(cli(url, "projections", "rebuild", "--all"))
    assert SECRET not in every_reader(url, "c-1")
    assert SECRET.encode() not in stored_bytes(url)

    ok(cli(url, "audit", "verify"))
    ok(cli(url, "audit", "verify", "--anchor", anchor))

    late = event("note.added", "c-1", {"note_id": "late", "text": "late"})
    refused = cli(url, "append", "-", stdin=ndjson([late]))
    assert refused.exit_code == 1
    assert "customer is erased" in refused.output

    again = json.loads(
        ok(cli(url, "customers", "erase", "c-1", "--reason", "again", "--yes", "--format", "json"))
    )
    assert again == {"customer_id": "c-1", "erased": False, "position": None}
    types = ok(cli(url, "audit", "history", "--customer", "c-1", "--format", "json"))
    assert types.count('"customer.erased"') == 1


def test_a_key_destroyed_without_its_event_already_reads_as_erased(url: str) -> None:
    """A crash between destroying the key and storing customer.erased (what a key
    table in its own database allows): readers show the customer erased, nothing
    new is accepted, and erasing again completes it."""
    db = parse_database_url(url)
    ring = Keyring.for_url(db)
    with Connection(db) as conn:
        ring.destroy(conn, "c-1")
    Keyring.forget_all()
    assert SECRET not in every_reader(url, "c-1")
    late = event("note.added", "c-1", {"note_id": "late", "text": "late"})
    assert "customer is erased" in cli(url, "append", "-", stdin=ndjson([late])).output
    answer = json.loads(
        ok(cli(url, "customers", "erase", "c-1", "--reason", "redo", "--yes", "--format", "json"))
    )
    assert answer["erased"] is True
    ok(cli(url, "audit", "verify"))


def test_an_interrupted_erasure_leaves_the_customer_whole(url: str) -> None:
    """customer.erased and the key's destruction share one transaction: an erasure
    that fails before commit (here: rolled back) leaves both, never one."""
    db = parse_database_url(url)
    ring = Keyring.for_url(db)
    with Connection(db) as conn, pytest.raises(RuntimeError), conn.transaction():
        ring.destroy(conn, "c-1")
        raise RuntimeError("killed")
    Keyring.forget_all()
    assert f"note {SECRET}" in every_reader(url, "c-1")


def test_a_ciphertext_moved_to_another_event_is_tampering_not_shown(url: str) -> None:
    ok(cli(url, "tab", "c-1", "timeline"))  # the read models hold the note's row
    with owner(url) as o:
        positions = {
            r[0]: bytes(r[4])
            for r in o.execute(
                "SELECT notification_id, 0, 0, 0, state FROM ledger_events ORDER BY notification_id"
            )
        }
        sms = next(p for p, s in positions.items() if b'"sms.sent"' in s and b'"c-1"' in s)
        note = next(p for p, s in positions.items() if b'"note.added"' in s and b'"c-1"' in s)
        marker = re.search(rb'"text":(\{"enc":[^}]*\})', positions[sms])
        assert marker is not None
        moved = re.sub(rb'"text":\{"enc":[^}]*\}', b'"text":' + marker.group(1), positions[note])
        o.set_state(note, moved)
    history = cli(url, "audit", "history", "--customer", "c-1", "--format", "json")
    assert (
        "tampering" in history.stdout
        and f"sms {SECRET}" not in history.stdout.split("note.added")[1]
    )
    timeline = cli(url, "tab", "c-1", "timeline")
    assert timeline.exit_code != 0
    assert "tampering" in timeline.output
    with Connection(parse_database_url(url)) as conn:
        with pytest.raises(RelayFatal, match="tampering"):
            for row in iter_rows(conn):
                build_message(row)


def test_wrong_or_missing_master_key_is_one_line_and_shows_nothing(
    url: str, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.key"
    new_master_key_file(wrong)
    Keyring.forget_all()
    for args in (
        ("tab", "c-1", "card"),
        ("audit", "history", "--customer", "c-1"),
        ("customers", "export", "c-1"),
    ):
        result = cli(url, "--master-key", str(wrong), *args)
        assert result.exit_code == 2, result.output
        assert SECRET not in result.output
        assert "master key" in result.output
        assert len(result.stderr.strip().splitlines()) == 1
        Keyring.forget_all()
    before = ok(cli(url, "audit", "anchor"))
    late = event("note.added", "c-2", {"note_id": "n-x", "text": "x"})
    result = cli(url, "--master-key", str(wrong), "append", "-", stdin=ndjson([late]))
    assert result.exit_code == 2
    Keyring.forget_all()
    assert ok(cli(url, "audit", "anchor")) == before

    missing = cli(url, "--master-key", str(tmp_path / "nowhere.key"), "tab", "c-1", "card")
    assert missing.exit_code == 2 and "cannot read the master key" in missing.output


def test_rotate_master_keeps_values_readable_with_the_new_key_only(
    url: str, tmp_path: Path, master_key: Path
) -> None:
    new = tmp_path / "new.key"
    ok(cli(url, "keys", "init", str(new)))
    assert "rewrapped" in ok(cli(url, "keys", "rotate-master", str(new)))
    Keyring.forget_all()
    shown = ok(cli(url, "--master-key", str(new), "tab", "c-1", "card", "--format", "json"))
    assert f"{SECRET} Anna" in shown
    Keyring.forget_all()
    old = cli(url, "--master-key", str(master_key), "tab", "c-1", "card")
    assert old.exit_code == 2 and SECRET not in old.output
    Keyring.forget_all()
    status = json.loads(
        ok(cli(url, "--master-key", str(new), "keys", "status", "--format", "json"))
    )
    assert status["customers"] == 2 and status["other_master"] == 0


def test_export_holds_every_personal_value_of_the_customer_and_nothing_else(
    url: str, tmp_path: Path
) -> None:
    out = tmp_path / "c-1.json"
    ok(cli(url, "customers", "export", "c-1", "--out", str(out)))
    text = out.read_text()
    document = json.loads(text)
    assert document["customer_id"] == "c-1"
    assert len(document["events"]) == len(story("c-1", SECRET))
    for e in story("c-1", SECRET):
        for value in re.findall(rf'"([^"]*{SECRET}[^"]*)"', json.dumps(e["data"])):
            assert value in text, value
    assert OTHER not in text and '"c-2"' not in text
    assert document["summary"]["segments"]


def test_a_store_written_before_encryption_is_refused(sqlite_url: str) -> None:
    ok(cli(sqlite_url, "append", "-", stdin=ndjson(story("c-1", SECRET)[:1])))
    Keyring.forget_all()
    with sqlite3.connect(parse_database_url(sqlite_url).path) as raw:
        raw.execute("DROP TABLE ledger_format")
    result = cli(sqlite_url, "tab", "c-1", "card")
    assert result.exit_code == 2
    assert "written before per-customer encryption" in result.output


def test_last_contact_forgets_an_erased_customer(url: str, store_url: str) -> None:
    ok(cli(url, "customers", "erase", "c-1", "--reason", "art. 17", "--yes"))
    with Connection(parse_database_url(url)) as conn:
        events = [row.decode() for row in iter_rows(conn)]
        handle = LastContact(conn)
        for e in events:
            if e.type != "customer.erased":
                handle(e)
        assert last_contact_of(conn, "c-1") is not None
        for e in events:
            handle(e)
        assert last_contact_of(conn, "c-1") is None
        assert last_contact_of(conn, "c-2") is not None


def test_erase_over_http_needs_the_erase_scope(url: str, tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    body = {"reason": "art. 17", "requested_by": "dpo@example.com"}
    with serve_in_thread(url, access=keys.access()) as client:
        refused = client.post("/v1/customers/c-1/erase", json=body, headers=keys.auth("reader"))
        assert refused.status_code == 403
        assert "erase" in refused.json()["detail"]
        done = client.post("/v1/customers/c-1/erase", json=body, headers=keys.auth("dpo"))
        assert done.status_code == 200, done.text
        assert done.json()["erased"] is True
        again = client.post("/v1/customers/c-1/erase", json=body, headers=keys.auth("dpo"))
        assert again.json() == {"customer_id": "c-1", "erased": False, "position": None}
        missing = client.post("/v1/customers/nobody/erase", json=body, headers=keys.auth("dpo"))
        assert missing.status_code == 404
        card = client.get("/v1/customers/c-1/tabs/card", headers=keys.auth("reader"))
        assert card.status_code == 200 and SECRET not in card.text and "[erased]" in card.text
    history = ok(cli(url, "audit", "history", "--customer", "c-1", "--format", "json"))
    assert '"requested_by":"dpo@example.com"' in history.replace(" ", "")
