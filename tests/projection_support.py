"""Shared by the projection and tab tests: realistic histories, appending them,
and comparing read models table by table."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ledger.application import LedgerApplication
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.domain import customer_stream_id
from ledger.reading import head_position
from ledger.stores.rows import LedgerStoredEvent
from projections.registry import PROJECTIONS
from projections.sealing import revealing
from tests.cli_runner import LEDGER
from tests.factories import append_ok as append
from tests.factories import event

_ZONES = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)))


class _Customer:
    """One customer's valid history, written as the rules allow it."""

    def __init__(self, cid: str, rng: random.Random, start: datetime) -> None:
        self.cid = cid
        self.rng = rng
        self.clock = start
        self.n = 0
        self.orders: list[str] = []
        self.emails: list[str] = []
        self.sms: list[str] = []
        self.segments: set[str] = set()
        self.dialogs: dict[str, str] = {}
        self.tasks: dict[str, str] = {}

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{self.cid}-{prefix}{self.n}"

    def _event(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        # Mostly forward in time, sometimes back: producers do send late events.
        self.clock += timedelta(minutes=self.rng.randint(-30, 600))
        zone = self.rng.choice(_ZONES)
        actor = self.rng.choice(
            (
                {"kind": "user", "id": "u-1", "name": "Maria"},
                {"kind": "user", "id": "u-2"},
                {"kind": "integration", "id": "ga"},
            )
        )
        return event(
            event_type,
            self.cid,
            data,
            occurred_at=self.clock.astimezone(zone).isoformat(),
            actor=actor,
        )

    def created(self) -> dict[str, Any]:
        return self._event("customer.created", {"card": {"name": self.cid, "tier": "gold"}})

    def next(self) -> dict[str, Any]:
        rng = self.rng
        choice = rng.randrange(14)
        if choice == 0:
            field = rng.choice(("email", "phone", "tier"))
            changes = [{"field": field, "old": None, "new": f"{field}-{self.n}"}]
            return self._event("customer.card_changed", {"changes": changes})
        if choice == 1 or (choice == 2 and not self.orders):
            oid = self._id("o")
            self.orders.append(oid)
            return self._event(
                "order.created",
                {"order_id": oid, "number": f"N{self.n}", "status": "new", "total": "12.50"},
            )
        if choice == 2:
            changes = [
                {"field": "status", "old": "new", "new": "paid"},
                {"field": "total", "old": "12.50", "new": {"amount": 13}},
            ]
            return self._event(
                "order.changed", {"order_id": rng.choice(self.orders), "changes": changes}
            )
        if choice == 3:
            segment = rng.choice(("vip", "news", "churn"))
            if segment in self.segments:
                self.segments.discard(segment)
                return self._event("segment.left", {"segment_id": segment})
            self.segments.add(segment)
            return self._event(
                "segment.joined", {"segment_id": segment, "segment_name": segment.upper()}
            )
        if choice == 4 or (choice == 5 and not self.emails):
            mid = self._id("e")
            self.emails.append(mid)
            return self._event("email.sent", {"message_id": mid, "subject": f"Hello {self.n}"})
        if choice == 5:
            kind = rng.choice(("delivered", "opened", "opened", "clicked", "bounced"))
            data: dict[str, Any] = {"message_id": rng.choice(self.emails)}
            if kind == "clicked":
                data["url"] = "https://shop.example.com/"
            return self._event(f"email.{kind}", data)
        if choice == 6:
            sid = self._id("s")
            self.sms.append(sid)
            return self._event("sms.sent", {"message_id": sid, "text": "Parcel on its way"})
        if choice == 7:
            return self._event(
                "call.logged",
                {
                    "call_id": self._id("c"),
                    "direction": "inbound",
                    "result": "answered",
                    "duration_s": rng.randint(0, 600),
                },
            )
        if choice == 8:
            open_dialogs = [d for d, s in self.dialogs.items() if s != "closed"]
            if not open_dialogs or rng.random() < 0.3:
                did = self._id("d")
                self.dialogs[did] = "new"
                return self._event(
                    "chat.started",
                    {"dialog_id": did, "channel": "telegram", "url": f"https://chat/{did}"},
                )
            did = rng.choice(open_dialogs)
            if rng.random() < 0.7:
                return self._event(
                    "chat.message",
                    {"dialog_id": did, "message_id": self._id("m"), "direction": "inbound"},
                )
            status = rng.choice(("in_progress", "waiting", "closed"))
            self.dialogs[did] = status
            return self._event("chat.status_changed", {"dialog_id": did, "status": status})
        if choice in (9, 10):
            live = [t for t, s in self.tasks.items() if s != "deleted"]
            if not live or rng.random() < 0.35:
                tid = self._id("t")
                self.tasks[tid] = "pending"
                return self._event(
                    "task.created",
                    {
                        "task_id": tid,
                        "title": f"Call back {self.n}",
                        "due_at": "2026-12-01T09:00:00+01:00",
                        "assignee_id": "u-1",
                    },
                )
            tid = rng.choice(live)
            if self.tasks[tid] == "pending":
                action = rng.choice(("edited", "completed", "deleted"))
            else:
                action = rng.choice(("reopened", "deleted"))
            self.tasks[tid] = {"completed": "completed", "deleted": "deleted"}.get(
                action, "pending"
            )
            data = {"task_id": tid}
            if action == "edited":
                data["changes"] = [{"field": "title", "old": "x", "new": f"Renamed {self.n}"}]
            return self._event(f"task.{action}", data)
        if choice == 11:
            return self._event("note.added", {"note_id": self._id("n"), "text": "Prefers mornings"})
        if choice == 12:
            return self._event(
                "file.attached",
                {"file_id": self._id("f"), "name": "contract.pdf", "size_bytes": 1024},
            )
        return self._event(
            "visit.recorded",
            {
                "visit_id": self._id("v"),
                "site": "shop.example.com",
                "source": "google",
                "channel": "search",
                "duration_s": rng.randint(1, 900),
                "pages_viewed": rng.randint(1, 9),
            },
        )


def history(customers: int, per_customer: int, seed: int = 1, prefix: str = "c") -> list[Any]:
    """Valid events for `customers` customers, interleaved as a live system would."""
    rng = random.Random(seed)
    start = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
    people = [_Customer(f"{prefix}{i}", rng, start) for i in range(customers)]
    out = [p.created() for p in people]
    for _ in range(customers * (per_customer - 1)):
        out.append(rng.choice(people).next())
    return out


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every live read-model table's rows, in a stable order, as a reader sees them
    (sealed personal cells revealed: their stored bytes differ run to run)."""
    with Connection(parse_database_url(url)) as raw:
        conn = revealing(raw)
        return {
            spec.name: sorted(
                (tuple(row) for row in conn.fetchall(f"SELECT * FROM {spec.name}")), key=repr
            )
            for projection in PROJECTIONS
            for spec in projection.tables
        }


def positions(url: str) -> dict[str, int]:
    with Connection(parse_database_url(url)) as conn:
        return {
            str(r[0]): int(r[1])
            for r in conn.fetchall("SELECT name, position FROM projection_tracking")
        }


def concurrent_writer(url: str, prefix: str, seed: int, errors: list[BaseException]) -> None:
    """Append a history in small batches, as one of several writers racing a follower."""
    try:
        app = LedgerApplication(parse_database_url(url))
        try:
            events = history(customers=3, per_customer=40, seed=seed, prefix=prefix)
            for start in range(0, len(events), 15):
                append(app, events[start : start + 15])
                time.sleep(0.02)
        finally:
            app.close()
    except BaseException as exc:
        errors.append(exc)


def wait_until_caught_up(url: str, timeout: float = 30) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    with Connection(parse_database_url(url)) as conn:
        while True:
            head = head_position(conn)
            now = positions(url)
            if all(now[p.name] == head for p in PROJECTIONS):
                return now
            assert time.monotonic() < deadline, (head, now)
            time.sleep(0.05)


class NoticeProcess:
    """A `ledger` command with `--format json` in a real process: its JSON notices
    (stdout, one a line) and its stderr collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [LEDGER, *args],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.notices: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_notices, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_notices(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self.notices.append(json.loads(line))

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self.errors.extend(self.process.stderr)


class FollowerProcess(NoticeProcess):
    """`ledger projections run --all --follow` in a real process, its JSON notices collected
    (the production follower is `projections.following.Follower`)."""

    def __init__(self, url: str, *extra: str, env: dict[str, str] | None = None) -> None:
        super().__init__(
            ["projections", "run", "--all", "--follow", "--format", "json", *extra],
            {"LEDGER_DATABASE_URL": url, **(env or {})},
        )

    def wait_for(self, kind: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while sum(n["event"] == kind for n in self.notices) < count:
            assert self.process.poll() is None, self.stop()
            assert time.monotonic() < deadline, self.notices
            time.sleep(0.02)

    def stop(self) -> str:
        """SIGTERM, as a supervisor would; its stderr."""
        self.process.terminate()
        self._finish()
        return "".join(self.errors)

    def kill(self) -> None:
        self.process.kill()
        self._finish()

    def _finish(self) -> None:
        self.process.wait(30)
        for reader in self._readers:
            reader.join(5)

    def kinds(self) -> list[str]:
        return [n["event"] for n in self.notices]


UNCHECKED_EVENT_ID = "0b7d7f4e-0000-4000-8000-000000000001"


def store_unchecked(
    app: LedgerApplication,
    event_type: str,
    data: dict[str, Any],
    *,
    stream: str = "c0",
    customer_id: str | None = None,
    subject: str | None = None,
) -> str:
    """An event stored straight through the recorder (a valid hash chain), as a
    ledger written before the contracts' limits would have held it: the first of
    `stream`'s customer stream, its envelope naming `customer_id` (default: the
    stream's). Its event id."""
    state = {
        "event_id": UNCHECKED_EVENT_ID,
        "recorded_at": "2026-10-01T10:00:00Z",
        "schema_version": 1,
        "type": event_type,
        "customer_id": stream if customer_id is None else customer_id,
        "occurred_at": "2026-10-01T10:00:00Z",
        "actor": {"kind": "system", "id": "s"},
        "source": None,
        "data": data,
    }
    with app.ledger_recorder.write_session() as session:
        session.insert(
            [
                LedgerStoredEvent(
                    originator_id=customer_stream_id(stream),
                    originator_version=1,
                    topic=event_type,
                    state=json.dumps(state).encode(),
                    event_id=UNCHECKED_EVENT_ID,
                    customer_id=stream,
                    subject=subject,
                )
            ]
        )
    return UNCHECKED_EVENT_ID
