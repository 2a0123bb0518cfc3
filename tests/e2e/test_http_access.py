"""The HTTP API's access keys, bad input and shutdown, against a real server."""

from __future__ import annotations

import json
import socket
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.access import load_access, token_hash
from api.scopes import SCOPES
from tests.cli_runner import run_ledger
from tests.factories import append_to_url, event, ndjson
from tests.http_support import make_keys, serve_in_thread, serve_process, spawned_children
from tests.waiting import wait_for


def created(customer: str = "c1") -> dict[str, Any]:
    return event("customer.created", customer, {"card": {"name": "Ann"}})


def task(task_id: str) -> dict[str, Any]:
    return event("task.created", "c1", {"task_id": task_id, "title": "Call", "assignee_id": "u-1"})


def is_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in answer.text
    return body


def test_keys_and_scopes(store_url: str, tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    append_to_url(store_url, [created(), task("t1"), task("t2")])
    with serve_in_thread(store_url, access=keys.access()) as client:
        tab = "/v1/customers/c1/tabs/tasks"
        unauthorized = is_problem(client.get(tab), 401)
        assert "Bearer" in unauthorized["detail"]
        assert client.get(tab).headers["www-authenticate"] == "Bearer"
        is_problem(client.get(tab, headers={"Authorization": "Bearer wrong"}), 401)
        is_problem(client.get(tab, headers={"Authorization": "Basic abc"}), 401)
        is_problem(client.get(tab, headers=keys.auth("ingest")), 403)
        # read: the tasks tab shows the key's own user's actions by default.
        shown = client.get(tab, headers=keys.auth("reader"))
        assert shown.status_code == 200 and shown.json()["items"]
        is_problem(client.post("/v1/events", json=created("c2"), headers=keys.auth("reader")), 403)
        assert (
            client.post("/v1/events", json=created("c2"), headers=keys.auth("ingest")).json()[
                "appended"
            ]
            == 1
        )

        def act(task_id: str, key: str, user: str | None = None) -> httpx.Response:
            params = {"as": user} if user else {}
            return client.post(
                f"/v1/customers/c1/tasks/{task_id}/complete", params=params, headers=keys.auth(key)
            )

        # tasks: as the key's own user only; act-as: on behalf of the named user.
        is_problem(act("t1", "reader"), 403)
        is_problem(act("t1", "agent", user="u-7"), 403)
        assert act("t1", "agent").status_code == 200
        is_problem(act("t2", "backend"), 400)  # act-as must name the user
        assert act("t2", "backend", user="u-7").status_code == 200
        rows = client.get(
            "/v1/audit/history", params={"customer": "c1"}, headers=keys.auth("auditor")
        ).text.splitlines()
        actors = [json.loads(r)["actor"]["id"] for r in rows if "task.completed" in r]
        assert actors == ["u-1", "u-7"]

        is_problem(client.get("/v1/audit/anchor", headers=keys.auth("reader")), 403)
        assert client.get("/v1/audit/anchor", headers=keys.auth("auditor")).status_code == 200
        is_problem(client.get("/v1/projections", headers=keys.auth("auditor")), 403)
        assert client.get("/v1/projections", headers=keys.auth("ops")).status_code == 200
        # Health and (unprotected) metrics need no key.
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
    with serve_in_thread(store_url, access=keys.access(), protect_metrics=True) as client:
        is_problem(client.get("/metrics"), 401)
        is_problem(client.get("/metrics", headers=keys.auth("reader")), 403)
        assert client.get("/metrics", headers=keys.auth("ops")).status_code == 200


def test_new_key_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    made = run_ledger(
        "access",
        "new-key",
        "crm",
        "--scope",
        "read",
        "--scope",
        "tasks",
        "--user",
        "u-42",
        "--access",
        str(path),
        "--format",
        "json",
    )
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    token = out["token"]
    assert len(token) >= 40 and token not in path.read_text()
    entry = tomllib.loads(path.read_text())["keys"]["crm"]
    assert entry == {"sha256": token_hash(token), "scopes": ["read", "tasks"], "user": "u-42"}
    assert load_access(path).verify(token) is not None
    again = run_ledger("access", "new-key", "crm", "--scope", "read", "--access", str(path))
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = run_ledger("access", "new-key", "x", "--scope", "root", "--access", str(path))
    assert bad.returncode == 2


def test_open_mode_only_on_loopback(tmp_path: Path, sqlite_url: str) -> None:
    refused = run_ledger("serve", "--host", "0.0.0.0", db=sqlite_url, timeout=30)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "without an access file" in lines[0]
    broken = tmp_path / "broken.toml"
    broken.write_text("[keys.a]\nsha256 = 'short'\nscopes = ['read']\n")
    bad_file = run_ledger("serve", "--access", str(broken), db=sqlite_url, timeout=30)
    assert bad_file.returncode == 2 and "sha256" in bad_file.stderr


def test_token_never_logged_and_request_ids_are(tmp_path: Path, sqlite_url: str) -> None:
    keys = make_keys(tmp_path)
    with serve_process(sqlite_url, tmp_path, "--access", str(keys.path)) as server:
        for name in ("reader", "ingest"):
            httpx.get(
                f"{server.base}/v1/customers/c1/tabs/timeline",
                headers={**keys.auth(name), "X-Request-Id": f"rid-{name}"},
            )
        httpx.get(f"{server.base}/healthz", headers={"Authorization": "Bearer not-a-real-key"})
        assert server.terminate() == 0
        log = server.log()
    assert "rid-reader" in log and "key=reader" in log and "rid-ingest" in log
    for token in (*keys.tokens.values(), "not-a-real-key"):
        assert token not in log


def test_bad_input_is_a_problem_never_a_500(store_url: str) -> None:
    append_to_url(store_url, [created()])
    with serve_in_thread(store_url, max_body=64 * 1024) as client:
        events = "/v1/events"
        big = ndjson(
            [event("note.added", "c1", {"note_id": f"n{i}", "text": "x" * 200}) for i in range(400)]
        )
        is_problem(
            client.post(events, content=big, headers={"content-type": "application/x-ndjson"}), 413
        )

        def chunks() -> Any:
            for _ in range(100):
                yield b" " * 1024

        is_problem(
            client.post(events, content=chunks(), headers={"content-type": "application/x-ndjson"}),
            413,
        )
    with serve_in_thread(store_url) as client:
        events = "/v1/events"
        malformed = is_problem(
            client.post(events, content=b"[{", headers={"content-type": "application/json"}), 422
        )
        assert "nothing stored" in malformed["detail"]
        is_problem(
            client.post(events, content=b'{"a": ', headers={"content-type": "application/json"}),
            422,
        )
        is_problem(
            client.post(events, content=b"nope", headers={"content-type": "application/json"}), 422
        )
        is_problem(
            client.post(events, content=b"", headers={"content-type": "application/json"}), 422
        )
        is_problem(client.post(events, content=b"{}", headers={"content-type": "text/plain"}), 415)
        is_problem(client.post(events, content=b"{}"), 415)
        is_problem(
            client.post(events, content=b"\xff\xfe", headers={"content-type": "application/json"}),
            422,
        )
        # NUL bytes: raw in the body, escaped in a string, in a path id.
        raw_nul = is_problem(
            client.post(
                events,
                content=b'{"type": "note.added\x00"}',
                headers={"content-type": "application/json"},
            ),
            422,
        )
        assert raw_nul["detail"]
        nul_text = event("note.added", "c1", {"note_id": "n\u0000", "text": "a\u0000b"})
        answer = client.post(events, json=nul_text)
        # Stored where the store can hold it (SQLite); a 422 where it cannot.
        assert answer.status_code in (200, 422), answer.text
        is_problem(client.get("/v1/customers/c%001/tabs/timeline"), 422)
        is_problem(client.post("/v1/customers/c%001/tasks/t1/complete", params={"as": "u"}), 422)
        # A 1 MB customer id: in an event, a contract rejection of that event;
        # in a path, refused by the HTTP parser before the app (a plain 400).
        huge = "c" * 1_000_000
        body = is_problem(client.post(events, json=created(huge)), 422)
        assert body["errors"][0]["index"] == 0 and body["errors"][0]["reason"]
        host, port = client.base_url.host, client.base_url.port
        with socket.create_connection((host, port), timeout=30) as raw:
            raw.sendall(
                f"GET /v1/customers/{huge}/tabs/timeline HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            assert raw.recv(100).startswith(b"HTTP/1.1 400 ")
        is_problem(client.get(f"/v1/customers/{'c' * 200}/tabs/timeline"), 422)
        # Unknown tab, bad parameters, bad cursor.
        is_problem(client.get("/v1/customers/c1/tabs/nope"), 400)
        is_problem(client.get("/v1/customers/c1/tabs/timeline", params={"cursor": "zzz"}), 400)
        is_problem(client.get("/v1/customers/c1/tabs/timeline", params={"limit": "0"}), 422)
        is_problem(client.get("/v1/customers/c1/tabs/timeline", params={"limit": "x"}), 422)
        is_problem(client.get("/v1/customers/c1/tabs/timeline", params={"kind": "weather"}), 422)
        is_problem(client.get("/v1/customers/c1/tabs/timeline", params={"since": "yesterday"}), 400)
        is_problem(client.get("/v1/customers/c1/tabs/visits", params={"since": "2026-01-01"}), 400)
        is_problem(client.get("/v1/customers/c1/tabs/visits", params={"limit": "1001"}), 422)
        is_problem(client.get("/v1/customers/c1/tabs/visits", params={"as": "u-1"}), 400)
        is_problem(
            client.post(
                "/v1/customers/c1/tasks/t1/edit",
                params={"as": "u"},
                content=b"{bad",
                headers={"content-type": "application/json"},
            ),
            400,
        )
        is_problem(client.get("/v1/nothing-here"), 404)
        is_problem(client.delete("/v1/events"), 405)
        # Nothing of the above was stored.
        rows = client.get("/v1/audit/history", params={"customer": "c1"}).text.splitlines()
        assert [json.loads(r)["type"] for r in rows][:1] == ["customer.created"]
        assert len(rows) <= 2  # the created event, and the NUL note if the contract allows it


def test_sigterm_during_an_import_stores_it_whole_or_not_at_all(
    store_url: str, tmp_path: Path
) -> None:
    append_to_url(store_url, [created()])
    body = ndjson(
        [event("note.added", "c1", {"note_id": f"n{i}", "text": "note"}) for i in range(40_000)]
    )
    # A long import: over the default item cap, raised for it.
    with serve_process(store_url, tmp_path, "--max-items", "40000") as server:
        answers: list[Any] = []

        def post() -> None:
            try:
                answers.append(
                    httpx.post(
                        f"{server.base}/v1/events",
                        content=body,
                        headers={"content-type": "application/x-ndjson"},
                        timeout=120,
                    ).status_code
                )
            except httpx.HTTPError as exc:
                answers.append(exc)

        poster = threading.Thread(target=post)
        poster.start()
        time.sleep(0.3)  # the import is under way
        assert server.terminate(timeout=120) == 0
        poster.join(120)
        log = server.log()
    stored = run_ledger("audit", "history", "--customer", "c1", "--format", "ndjson", db=store_url)
    notes = [line for line in stored.stdout.splitlines() if "note.added" in line]
    assert len(notes) in (0, 40_000)
    # Graceful: the request in flight when SIGTERM came was finished, and answered.
    assert log.index("Shutting down") < log.index("POST /v1/events 200"), log
    assert answers == [200] and len(notes) == 40_000


@pytest.mark.parametrize("header", ["x" * 200, "bad id with spaces"])
def test_odd_request_ids_are_replaced(sqlite_url: str, header: str) -> None:
    with serve_in_thread(sqlite_url) as client:
        rid = client.get("/healthz", headers={"X-Request-Id": header}).headers["x-request-id"]
        assert rid != header and len(rid) == 32


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_several_workers_serve_and_count_together(
    sqlite_url: str, tmp_path: Path, writer: str
) -> None:
    append_to_url(sqlite_url, [created()])
    args = ("--workers", "2", "--append-writer", writer)
    with serve_process(sqlite_url, tmp_path, *args) as server:
        if writer == "process":  # each worker starts a writer process of its own
            workers = spawned_children(server.process.pid)  # uvicorn's
            assert len(workers) == 2
            writers = wait_for(lambda: _each_ones(workers))
            assert [len(w) for w in writers] == [1, 1]
        with httpx.Client(base_url=server.base) as client:
            for i in range(20):
                note = event("note.added", "c1", {"note_id": f"n{i}", "text": "x"})
                assert client.post("/v1/events", json=note).json()["appended"] == 1
            for _ in range(4):  # whichever worker answers, it reports all of them
                text = client.get("/metrics").text
                appended = [
                    line
                    for line in text.splitlines()
                    if line.startswith("ledger_events_appended_total ")
                ]
                assert appended == ["ledger_events_appended_total 20.0"], appended
                assert "ledger_head_position 21.0" in text
        assert server.terminate() == 0
        log = server.log()
    # Each worker, a process of its own, logs a line per request as one server does.
    assert log.count("POST /v1/events 200") == 20, log


def _each_ones(workers: list[int]) -> list[list[int]]:
    """Each worker's writer processes, once every worker has started one."""
    found = [spawned_children(w) for w in workers]
    return found if all(found) else []


def test_an_unreachable_database_is_503_not_500() -> None:
    url = "postgresql://postgres@127.0.0.1:1/x?connect_timeout=1"
    with serve_in_thread(url) as client:
        assert client.get("/healthz").status_code == 200
        is_problem(client.get("/readyz"), 503)
        is_problem(client.get("/v1/customers/c1/tabs/timeline"), 503)
        is_problem(client.post("/v1/events", json=created()), 503)
        anchor = client.get("/v1/audit/anchor", headers={"X-Request-Id": "r-503"})
        assert is_problem(anchor, 503)["request_id"] == anchor.headers["x-request-id"] == "r-503"
        is_problem(client.get("/v1/projections"), 503)
        assert client.get("/metrics").status_code == 200  # with ledger_store_up 0
        assert "ledger_store_up 0.0" in client.get("/metrics").text


def test_new_key_offers_every_scope_the_api_checks(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    for scope in SCOPES:
        made = run_ledger(
            "access", "new-key", f"k-{scope}", "--scope", scope, "--access", str(path)
        )
        assert made.returncode == 0, (scope, made.stderr)
    keys = tomllib.loads(path.read_text())["keys"]
    assert {s for entry in keys.values() for s in entry["scopes"]} == set(SCOPES)
