"""The group committer in a writer process of its own (`ledger serve
--append-writer process`, services/writer_process.py): the same answers as the
thread's, each event stored once; a killed writer answers 503 and the next
append starts another, with nothing lost; the writer stops with its server."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.reading import iter_rows
from tests.cli_runner import run_ledger
from tests.factories import event
from tests.http_support import serve_in_thread, serve_process, spawned_children
from tests.waiting import wait_for


def _note(customer: str, i: int, **extra: Any) -> dict[str, Any]:
    return event("note.added", customer, {"note_id": f"n{i}", "text": f"note {i}"}, **extra)


def _stored(url: str) -> dict[str, int]:
    """Each stored event id and its position, read from the store itself."""
    with Connection(parse_database_url(url)) as conn:
        return {json.loads(row.state)["event_id"]: row.position for row in iter_rows(conn)}


def _count(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_concurrent_one_event_appends_are_each_answered_and_stored_once(store_url: str) -> None:
    with serve_in_thread(store_url, append_writer="process") as client:
        # The counters are this test process's: other servers in it counted before.
        counted = _count(client.get("/metrics").text, "ledger_events_appended_total")
        created = event("customer.created", "c1", {"card": {"name": "Ann"}})
        assert client.post("/v1/events", json=created).status_code == 200
        notes = [_note("c1", i) for i in range(40)]
        bodies: list[tuple[dict[str, Any], str]] = [(n, "") for n in notes]
        bodies.append((notes[0], ""))  # a retry of an event sent meanwhile
        bodies.append((event("note.added", "c1", {"text": "no note id"}), ""))  # rejected
        bodies.append((_note("nobody", 100), "?skip_invalid=true"))  # rejected, skip mode
        answers: dict[int, httpx.Response] = {}

        def post(indexes: range) -> None:
            with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
                for i in indexes:
                    body, query = bodies[i]
                    answers[i] = own.post(f"/v1/events{query}", json=body)

        threads = [
            threading.Thread(target=post, args=(range(k, len(bodies), 8),)) for k in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        metrics = client.get("/metrics").text

    stored = _stored(store_url)
    assert sorted(stored) == sorted([created["event_id"], *(n["event_id"] for n in notes)])
    # Each stored note's answer names its own position; the retry is the duplicate.
    first, retry = answers[0].json(), answers[40].json()
    assert {first["appended"], retry["appended"]} == {0, 1}
    assert {first["duplicates"], retry["duplicates"]} == {0, 1}
    for i, note in enumerate(notes[1:], 1):
        answer = answers[i].json()
        assert answers[i].status_code == 200 and answer["appended"] == 1, answer
        assert answer["first_position"] == answer["last_position"] == stored[note["event_id"]]
    rejected = answers[41]
    assert rejected.status_code == 422, rejected.text
    assert [e["field"] for e in rejected.json()["errors"]] == ["data.note_id"]
    skipped = answers[42].json()
    assert answers[42].status_code == 200 and skipped["appended"] == 0
    assert skipped["rejected"][0]["index"] == 0
    assert skipped["rejected"][0]["code"] == "customer_missing"
    # The writer's appends are counted by the server that exposes the metrics.
    assert _count(metrics, "ledger_events_appended_total") - counted == 41


def _post_until_answered(
    base: str, bodies: list[dict[str, Any]], codes: Counter[int], failures: list[str]
) -> None:
    """Each body POSTed until it gets a 200; a 503 is retried as a producer would."""
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            for body in bodies:
                while (answer := client.post("/v1/events", json=body)).status_code == 503:
                    codes[503] += 1
                    time.sleep(0.01)
                codes[answer.status_code] += 1
                if answer.status_code != 200:
                    failures.append(answer.text)
    except Exception as exc:  # a request that never got an answer fails the test
        failures.append(repr(exc))


def test_a_killed_writer_loses_nothing_and_the_next_append_starts_another(
    store_url: str, tmp_path: Path
) -> None:
    with serve_process(store_url, tmp_path, "--append-writer", "process") as server:
        httpx.post(
            f"{server.base}/v1/events",
            json=[event("customer.created", f"c{k}", {"card": {"name": "Ann"}}) for k in range(4)],
        ).raise_for_status()
        [writer] = wait_for(lambda: spawned_children(server.process.pid))
        notes = [[_note(f"c{k}", i) for i in range(60)] for k in range(4)]
        codes: Counter[int] = Counter()
        failures: list[str] = []
        clients = [
            threading.Thread(
                target=_post_until_answered, args=(server.base, share, codes, failures)
            )
            for share in notes
        ]
        for c in clients:
            c.start()
        wait_for(lambda: sum(codes.values()) >= 40)
        os.kill(writer, signal.SIGKILL)
        for c in clients:
            c.join(120)
        [again] = wait_for(lambda: spawned_children(server.process.pid))
        assert again != writer
        assert server.terminate() == 0
        assert "the append writer process stopped (exit code -9)" in server.log()
    # Every event stored exactly once (a retried event that had been stored
    # counted as a duplicate), every customer's notes in the order sent.
    stored = _stored(store_url)
    for share in notes:
        positions = [stored[n["event_id"]] for n in share]
        assert positions == sorted(positions)
    assert len(stored) == 4 + 240
    assert set(codes) <= {200, 503} and not failures


def test_the_writer_stops_with_its_server(sqlite_url: str, tmp_path: Path) -> None:
    # SIGTERM: the server lets the writer finish, then stops it, and exits 0.
    with serve_process(sqlite_url, tmp_path, "--append-writer", "process") as server:
        [writer] = wait_for(lambda: spawned_children(server.process.pid))
        note = event("customer.created", "c1", {"card": {"name": "Ann"}})
        assert httpx.post(f"{server.base}/v1/events", json=note).status_code == 200
        assert server.terminate() == 0
        assert wait_for(lambda: _gone(writer), 10)
    # Killed: its writer finds the pipe closed and exits by itself.
    with serve_process(sqlite_url, tmp_path, "--append-writer", "process") as server:
        [writer] = wait_for(lambda: spawned_children(server.process.pid))
        server.process.kill()
        server.process.wait(10)
        assert wait_for(lambda: _gone(writer), 10)
    assert list(_stored(sqlite_url)) == [note["event_id"]]


def test_an_unknown_append_writer_is_one_line_and_exit_2(sqlite_url: str) -> None:
    result = run_ledger("serve", db=sqlite_url, env={"LEDGER_APPEND_WRITER": "fork"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: LEDGER_APPEND_WRITER='fork': give one of thread, process"
    ], result.stderr
    option = run_ledger("serve", "--append-writer", "fork", db=sqlite_url)
    assert option.returncode == 2 and "'fork' is not one of 'thread', 'process'" in option.stderr
