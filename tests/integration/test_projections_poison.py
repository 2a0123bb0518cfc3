"""A projector that meets a stored event it cannot apply stops that projection with
one line; `projections status` shows it; the other projections go on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from ledger.application import LedgerApplication
from ledger.db import Connection
from projections import rebuild as replay
from projections import tracking
from projections.following import Follower, FollowNotice
from projections.registry import PROJECTIONS
from projections.runner import Runner
from projections.schema import ensure_schema
from projections.targets import ProjectionError, Target
from tests.background import running_in_thread
from tests.cli_runner import run_ledger
from tests.factories import append_ok as append
from tests.factories import event
from tests.projection_support import UNCHECKED_EVENT_ID, store_unchecked

POISON_ID = UNCHECKED_EVENT_ID


def _store_unchecked(
    app: LedgerApplication, data: dict[str, object], customer_id: str = "c0"
) -> None:
    """A call.logged in c0's stream, stored as a ledger written before the
    contracts' limits would have."""
    store_unchecked(
        app, "call.logged", data, customer_id=customer_id, subject="call:" + str(data["call_id"])
    )


CALL = {"call_id": "k1", "direction": "inbound", "result": "answered"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # Beyond 64 bits: the contract refuses it when decoding (both stores).
        ({**CALL, "duration_s": 2**70}, "does not match its contract: data.duration_s"),
    ],
)
def test_poison_event_stops_only_the_projections_that_read_it(
    app: LedgerApplication, store_url: str, data: dict[str, object], reason: str
) -> None:
    append(app, [event("customer.created", "c1", {"card": {"name": "Ann"}})])
    _store_unchecked(app, data)
    append(app, [event("note.added", "c1", {"note_id": "n1", "text": "after"})])

    ran = run_ledger("projections", "run", "--all", db=store_url)
    assert ran.returncode == 1
    # The timeline and the people read model read every event type.
    [people_line, line] = ran.stderr.splitlines()
    assert people_line.startswith("projection people stopped at position 2")
    assert line.startswith(
        f"projection timeline stopped at position 2 (event_id {POISON_ID}, type call.logged): "
        + reason
    )
    status = json.loads(
        run_ledger("projections", "status", "--format", "json", db=store_url).stdout
    )
    by_name = {p["name"]: p for p in status["projections"]}
    assert by_name["timeline"]["state"] == "stopped"
    assert by_name["timeline"]["position"] == 1
    assert by_name["timeline"]["stopped"] == line
    others = [p for name, p in by_name.items() if name not in ("timeline", "people")]
    assert others and all(p["position"] == 3 and p["state"] != "stopped" for p in others)
    human = run_ledger("projections", "status", db=store_url).stdout
    assert line in human.splitlines()
    # Rerunning does not loop or skip: it stays where it stopped, and says so again.
    again = run_ledger("projections", "run", "--all", db=store_url)
    assert (again.returncode, again.stderr.splitlines()) == (1, [people_line, line])


def test_a_read_model_refusing_an_event_stops_at_that_event(app: LedgerApplication) -> None:
    """PostgreSQL text cannot hold NUL: an event stored with one stops at that event,
    after applying what came before it in the same batch."""
    if app.url.kind != "postgresql":
        pytest.skip("SQLite text holds NUL")
    append(app, [event("customer.created", "c1", {"card": {}})])
    _store_unchecked(app, {**CALL, "duration_s": 5}, customer_id="c0\u0000")
    with Connection(app.url) as conn:
        ensure_schema(conn)
        timeline = next(p for p in PROJECTIONS if p.name == "timeline")
        runner = Runner(conn, [Target.live(timeline)])
        runner.catch_up()
        assert runner.position() == 1
        [line] = runner.stopped.values()
        assert f"stopped at position 2 (event_id {POISON_ID}, type call.logged)" in line
        # A rebuild meets the same event: it fails with the same line, not a traceback.
        with pytest.raises(ProjectionError, match="stopped at position 2"):
            replay.rebuild(conn, [timeline])


def test_a_follower_reports_the_stop_once_and_follows_the_others(
    app: LedgerApplication,
) -> None:
    append(app, [event("customer.created", "c1", {"card": {}})])
    notices: list[FollowNotice] = []
    stop = threading.Event()
    follower = Follower(
        app.url,
        PROJECTIONS,
        stop=stop,
        notify=notices.append,
        interval=0.05,
        prepare=ensure_schema,
    )
    with running_in_thread(follower.run, stop.set, "follower", 30):
        _wait(lambda: any(n.kind == "caught_up" for n in notices))
        _store_unchecked(app, {**CALL, "duration_s": 2**70})
        append(app, [event("note.added", "c1", {"note_id": "n1", "text": "after"})])
        with Connection(app.url) as conn:
            _wait(lambda: tracking.read_all(conn)["card"].position == 3)
            rows = tracking.read_all(conn)
        time.sleep(0.3)  # a few more polls: the stop is reported once, not each time
    stops = [n.error for n in notices if n.kind == "projection_stopped"]
    assert len(stops) == 2 and stops[0] is not None and stops[1] is not None
    assert stops[0].startswith("projection timeline stopped at position 2")
    assert stops[1].startswith("projection people stopped at position 2")
    assert rows["timeline"].position == 1 and rows["timeline"].stopped == stops[0]


def _wait(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)
