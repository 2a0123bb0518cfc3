"""One `ledger serve` of many tenants (issue 24, doors): each request is served
from its tenant's store, chosen by its key (or, for an operator key, its
`X-Ledger-Tenant` header), and nothing of one tenant shows through another's,
in the API, the lean append lane or the card page. Real PostgreSQL stores; the
directory in SQLite (a small host's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.access import load_access, new_key
from api.app import create_app
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.stores.layout import EVENTS_TABLE
from ledger.tenants import TenantState
from services.bootstrap import Services, migrate
from services.tenants import add_tenant, directory
from tests.cli_runner import LEDGER, run_ledger
from tests.conftest import _fresh_pg_schema
from tests.factories import event
from tests.http_support import free_socket, page_sign_in, serve_app_in_thread


def created(customer: str, name: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "customer.created",
        "customer_id": customer,
        "occurred_at": "2026-11-01T09:00:00+01:00",
        "actor": {"kind": "user", "id": "u-1", "name": "Maria"},
        "data": {"card": {"name": name}},
    }


@dataclass
class Shops:
    """Two tenants with the same customer id and different data, their keys."""

    directory_url: str
    stores: dict[str, str]
    access: Path
    tokens: dict[str, str]

    def auth(self, key: str, tenant: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.tokens[key]}"}
        if tenant is not None:
            headers["X-Ledger-Tenant"] = tenant
        return headers


def make_shops(directory_url: str, store: Callable[[], str], access: Path) -> Shops:
    found = directory(directory_url)
    stores = {}
    for tenant in ("shop-a", "shop-b"):
        stores[tenant] = store()
        add_tenant(found, tenant, stores[tenant], None)
    tokens = {
        "a": new_key(access, "a", ["read", "ingest", "tasks"], "u-1", tenant="shop-a").token,
        "b": new_key(access, "b", ["read", "ingest", "tasks"], "u-1", tenant="shop-b").token,
        "ops": new_key(access, "ops", ["read", "ingest"], None, all_tenants=True).token,
    }
    return Shops(directory_url, stores, access, tokens)


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shops]:
    """Two tenants' stores, made once for the tests that only add to them."""
    tmp = tmp_path_factory.mktemp("tenants")
    with ExitStack() as stack:
        found = make_shops(
            f"sqlite:///{tmp / 'tenants.db'}",
            lambda: stack.enter_context(_fresh_pg_schema()),
            tmp / "access.toml",
        )
        seed(found)
        yield found


def seed(shops: Shops) -> None:
    """The same customer id in both shops, each with its own name; c-b only in B."""
    app = create_app(Services(), access=load_access(shops.access), tenants_url=shops.directory_url)
    with serve_app_in_thread(app) as client:
        for key, events in (
            ("a", [created("c1", "Alice of A")]),
            ("b", [created("c1", "Bob of B"), created("c-b", "Only in B")]),
        ):
            answer = client.post("/v1/events", json=events, headers=shops.auth(key))
            assert answer.status_code == 200, answer.text


@pytest.fixture
def app(shops: Shops) -> Any:
    """A server of every tenant in the directory, its keys in the access file."""
    return create_app(Services(), access=load_access(shops.access), tenants_url=shops.directory_url)


@pytest.fixture
def served(app: Any) -> Iterator[httpx.Client]:
    with serve_app_in_thread(app) as client:
        yield client


def names(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    return answer.text


def test_each_tenant_key_sees_only_its_own_store(shops: Shops, served: httpx.Client) -> None:
    seen_a = names(served.get("/v1/customers/c1/tabs/timeline", headers=shops.auth("a")))
    seen_b = names(served.get("/v1/customers/c1/tabs/timeline", headers=shops.auth("b")))
    assert "Alice of A" in seen_a and "Bob of B" not in seen_a
    assert "Bob of B" in seen_b and "Alice of A" not in seen_b
    # A customer of B only is unknown to A: the answer of a customer that exists nowhere.
    only_b = served.get("/v1/customers/c-b/tabs/timeline", headers=shops.auth("a"))
    nowhere = served.get("/v1/customers/c-x/tabs/timeline", headers=shops.auth("a"))
    assert only_b.status_code == nowhere.status_code == 404
    assert only_b.json()["code"] == nowhere.json()["code"] == "customer_missing"
    assert only_b.json()["detail"] == "no customer 'c-b'"
    found = served.get("/v1/customers", params={"q": "Only"}, headers=shops.auth("a"))
    assert found.status_code == 200 and found.json()["items"] == []
    # The key naming its own tenant is served as without the header.
    own = served.get("/v1/customers/c1/tabs/timeline", headers=shops.auth("a", "shop-a"))
    assert "Alice of A" in names(own)


def test_the_tenant_a_request_names(shops: Shops, served: httpx.Client) -> None:
    path = "/v1/customers/c1/tabs/timeline"
    other = served.get(path, headers=shops.auth("a", "shop-b"))
    assert other.status_code == 403, other.text
    assert other.headers["content-type"] == "application/problem+json"
    assert "shop-a" in other.json()["detail"] and "Bob" not in other.text
    bare = served.get(path, headers=shops.auth("ops"))
    assert bare.status_code == 400 and "X-Ledger-Tenant" in bare.json()["detail"]
    assert "Alice of A" in names(served.get(path, headers=shops.auth("ops", "shop-a")))
    assert "Bob of B" in names(served.get(path, headers=shops.auth("ops", "shop-b")))
    unknown = served.get(path, headers=shops.auth("ops", "shop-z"))
    assert unknown.status_code == 404 and unknown.json()["detail"] == "unknown tenant 'shop-z'"
    malformed = served.get(path, headers=shops.auth("ops", "Shop A"))
    assert malformed.status_code == 400
    # The same refusals on the lean append lane.
    event = created("c2", "x")
    assert (
        served.post("/v1/events", json=event, headers=shops.auth("a", "shop-b")).status_code == 403
    )
    assert served.post("/v1/events", json=event, headers=shops.auth("ops")).status_code == 400
    assert served.get("/readyz").status_code == 200
    assert served.get("/healthz").status_code == 200


def test_an_append_through_the_lane_lands_in_its_tenants_store(
    shops: Shops, served: httpx.Client
) -> None:
    # One event object, no query string: the lean lane (api/lane.py).
    answer = served.post("/v1/events", json=created("c-new", "New in A"), headers=shops.auth("a"))
    assert answer.status_code == 200 and answer.json()["appended"] == 1, answer.text
    answer = served.post(
        "/v1/events", json=created("c-ops", "Ops in B"), headers=shops.auth("ops", "shop-b")
    )
    assert answer.status_code == 200 and answer.json()["appended"] == 1, answer.text
    in_a, in_b = (stored_customers(shops.stores[t]) for t in ("shop-a", "shop-b"))
    assert {"c1", "c-new"} <= in_a and "c-ops" not in in_a and "c-b" not in in_a
    assert {"c1", "c-b", "c-ops"} <= in_b and "c-new" not in in_b


def test_a_writer_process_stores_each_tenants_appends_in_its_own_store(shops: Shops) -> None:
    # One writer process for the server; each tenant's events through its own store.
    app = create_app(
        Services(),
        access=load_access(shops.access),
        tenants_url=shops.directory_url,
        append_writer="process",
    )
    customers = {"a": [f"c-wa{i}" for i in range(10)], "b": [f"c-wb{i}" for i in range(10)]}
    answers: list[httpx.Response] = []
    with serve_app_in_thread(app) as served:

        def post(key: str) -> None:
            with httpx.Client(base_url=str(served.base_url), timeout=60) as client:
                for customer in customers[key]:
                    body = created(customer, f"{customer} of {key}")
                    answers.append(client.post("/v1/events", json=body, headers=shops.auth(key)))

        threads = [threading.Thread(target=post, args=(key,)) for key in customers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(answers) == 20
    assert all(a.status_code == 200 and a.json()["appended"] == 1 for a in answers)
    in_a, in_b = (stored_customers(shops.stores[t]) for t in ("shop-a", "shop-b"))
    assert set(customers["a"]) <= in_a and not set(customers["b"]) & in_a
    assert set(customers["b"]) <= in_b and not set(customers["a"]) & in_b


def stored_customers(url: str) -> set[str]:
    """The customers with events in one store, read from the store itself."""
    with Connection(parse_database_url(url)) as conn:
        rows = conn.fetchall(f"SELECT DISTINCT customer_id FROM {EVENTS_TABLE}")
    return {str(row[0]) for row in rows}


def test_the_card_page_shows_only_the_signed_in_keys_tenant(
    shops: Shops, served: httpx.Client
) -> None:
    page_sign_in(served, shops.tokens["a"], customer="c1")
    card = served.get("/customers/c1")
    assert card.status_code == 200 and "Alice of A" in card.text and "Bob of B" not in card.text
    # B's customer is no customer of A's, on the page as in the API.
    assert served.get("/customers/c-b").status_code == 404
    search = served.get("/customers", params={"q": "of"})
    assert "Alice of A" in search.text and "Bob of B" not in search.text
    # A header naming B changes nothing: the session is A's.
    card = served.get("/customers/c1", headers={"X-Ledger-Tenant": "shop-b"})
    assert "Alice of A" in card.text and "Bob of B" not in card.text


def test_an_operator_key_cannot_sign_in_to_the_page(shops: Shops, served: httpx.Client) -> None:
    form = served.get("/signin")
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = served.post("/signin", data={"csrf": csrf, "key": shops.tokens["ops"]})
    assert answer.status_code == 400 and "key of one tenant" in answer.text
    assert "Alice" not in answer.text and "Bob" not in answer.text


def test_a_moving_tenant_is_503_and_its_new_store_is_served_after(
    tmp_path: Path, fresh_pg_urls: Callable[[], str]
) -> None:
    shops = make_shops(f"sqlite:///{tmp_path / 'tenants.db'}", fresh_pg_urls, tmp_path / "a.toml")
    seed(shops)
    app = create_app(Services(), access=load_access(shops.access), tenants_url=shops.directory_url)
    with serve_app_in_thread(app) as served:
        moving_and_moved(shops, app.state.ledger.tenants, served, fresh_pg_urls)


def moving_and_moved(
    shops: Shops, stores: Any, served: httpx.Client, fresh_pg_urls: Callable[[], str]
) -> None:
    path = "/v1/customers/c1/tabs/timeline"
    assert "Alice of A" in names(served.get(path, headers=shops.auth("a")))
    found = directory(shops.directory_url)
    with found.connect() as conn, conn.transaction():
        found.set_state(conn, "shop-a", TenantState.MOVING)
    stores.ttl = 0  # look in the directory on every request
    moving = served.get(path, headers=shops.auth("a"))
    assert moving.status_code == 503 and moving.headers["Retry-After"], moving.text
    assert "being moved" in moving.json()["detail"]
    # Switched to a new store (what `ledger tenants move` ends with; here an empty one).
    new_store = fresh_pg_urls()
    migrate(parse_database_url(new_store))
    with found.connect() as conn, conn.transaction():
        found.switch(conn, "shop-a", new_store)
    after = served.get(path, headers=shops.auth("a"))
    assert after.status_code == 404 and after.json()["code"] == "customer_missing", after.text


def test_ledger_serve_with_a_directory_serves_every_tenant(shops: Shops, tmp_path: Path) -> None:
    store_settings = ("LEDGER_DATABASE_URL", "LEDGER_TENANT", "LEDGER_TENANTS_URL")
    env = {k: v for k, v in os.environ.items() if k not in store_settings}
    env.pop("LEDGER_ACCESS_FILE", None)
    made = run_ledger(
        "access", "new-key", f"cli-{uuid.uuid4().hex[:8]}", "--tenant", "shop-a", "--scope", "read",
        "--scope", "ingest", "--access", str(shops.access), "--format", "json", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert 'tenant = "shop-a"' in json.loads(made.stdout)["entry"]
    token = json.loads(made.stdout)["token"]
    # A key of no tenant on a server of many: refused before serving, naming it.
    plain = tmp_path / "plain.toml"
    new_key(plain, "legacy", ["read"], None)
    refused = run_ledger(
        "--tenants-db", shops.directory_url, "serve", "--access", str(plain), env=env
    )
    assert refused.returncode == 2 and "legacy" in refused.stderr, refused.stderr
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    args = ["--tenants-db", shops.directory_url, "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [LEDGER, *args, "--access", str(shops.access)], env=env, stdout=out, stderr=out
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            auth = {"Authorization": f"Bearer {token}"}
            appended = client.post("/v1/events", json=created("c-cli", "Via CLI"), headers=auth)
            assert appended.status_code == 200, appended.text
            tab = client.get("/v1/customers/c-cli/tabs/timeline", headers=auth)
            assert "Via CLI" in names(tab)
            other = client.get("/v1/customers/c-cli/tabs/timeline", headers=shops.auth("b"))
            assert other.status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    assert "every tenant of" in log.read_text()
    assert "c-cli" in stored_customers(shops.stores["shop-a"])


def test_metrics_take_an_operator_key_without_a_tenant(shops: Shops) -> None:
    app = create_app(
        Services(),
        access=load_access(shops.access),
        tenants_url=shops.directory_url,
        protect_metrics=True,
    )
    with serve_app_in_thread(app) as client:
        assert client.get("/metrics").status_code == 401
        # The ops scope decides, not a tenant: the process's metrics are no tenant's.
        assert client.get("/metrics", headers=shops.auth("ops")).status_code == 403
    access = shops.access.parent / "ops.toml"
    token = new_key(access, "metrics", ["ops"], None, all_tenants=True).token
    # A key of no tenant (`ledger serve` refuses to start with one; one added
    # while it runs) is refused what reaches a store, naming the fix.
    legacy = new_key(access, "legacy", ["read"], None).token
    app = create_app(
        Services(),
        access=load_access(access),
        tenants_url=shops.directory_url,
        protect_metrics=True,
    )
    with serve_app_in_thread(app) as client:
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and "ledger_http_requests_total" in answer.text
        # Every tenant's store, summed per server (docs/http.md, "Metrics").
        assert 'ledger_tenants{server="postgresql://' in answer.text
        assert "ledger_server_events{" in answer.text
        refused = client.get(
            "/v1/customers/c1/tabs/timeline",
            headers={"Authorization": f"Bearer {legacy}", "X-Ledger-Tenant": "shop-a"},
        )
        assert refused.status_code == 403 and "--tenant" in refused.json()["detail"]


def test_a_server_of_one_tenant_serves_only_that_tenants_keys(shops: Shops) -> None:
    # `ledger --tenant shop-a serve`: one tenant, served like a single store.
    one = Services(tenant_option="shop-a", tenants_option=shops.directory_url)
    app = create_app(one, access=load_access(shops.access))
    path = "/v1/customers/c1/tabs/timeline"
    with serve_app_in_thread(app) as client:
        assert "Alice of A" in names(client.get(path, headers=shops.auth("a")))
        assert "Alice of A" in names(client.get(path, headers=shops.auth("ops")))
        other = client.get(path, headers=shops.auth("b"))
        assert other.status_code == 403 and "Bob" not in other.text
        elsewhere = client.get(path, headers=shops.auth("ops", "shop-b"))
        assert elsewhere.status_code == 404 and "Bob" not in elsewhere.text
        lane = client.post("/v1/events", json=created("c-x", "x"), headers=shops.auth("b"))
        assert lane.status_code == 403


def test_a_single_ledger_refuses_tenant_keys_and_the_header(shops: Shops, pg_url: str) -> None:
    app = create_app(Services(db_option=pg_url), access=load_access(shops.access))
    path = "/v1/customers/c1/tabs/timeline"
    with serve_app_in_thread(app) as client:
        assert client.get(path, headers=shops.auth("a")).status_code == 403
        assert client.get(path, headers=shops.auth("ops", "shop-a")).status_code == 400
        assert client.get(path, headers=shops.auth("ops")).status_code == 404  # no customer


def test_each_tenant_acts_under_its_own_rights_policy(
    shops: Shops, tmp_path: Path, fresh_pg_urls: Callable[[], str]
) -> None:
    policy = tmp_path / "strict.toml"
    policy.write_text('[users]\nu-1 = ["tasks.edit"]\n')  # no tasks.delete
    add_tenant(directory(shops.directory_url), "shop-strict", fresh_pg_urls(), str(policy))
    access = tmp_path / "access.toml"
    strict = new_key(access, "strict", ["ingest", "tasks"], "u-1", tenant="shop-strict").token
    lenient = new_key(access, "lenient", ["ingest", "tasks"], "u-1", tenant="shop-a").token
    app = create_app(Services(), access=load_access(access), tenants_url=shops.directory_url)
    task = {"task_id": "t-r", "title": "Call back", "assignee_id": "u-1"}
    with serve_app_in_thread(app) as client:
        for token, status in ((strict, 403), (lenient, 200)):
            auth = {"Authorization": f"Bearer {token}"}
            customer = f"c-rights-{uuid.uuid4().hex[:6]}"
            events = [created(customer, "R"), event("task.created", customer, task)]
            assert client.post("/v1/events", json=events, headers=auth).status_code == 200
            deleted = client.post(f"/v1/customers/{customer}/tasks/t-r/delete", headers=auth)
            assert deleted.status_code == status, deleted.text
            assert status == 200 or "tasks.delete" in deleted.json()["detail"]


def test_in_a_browser_the_card_page_signed_in_with_a_key_of_a_shows_only_a(
    shops: Shops, served: httpx.Client, browser: Any
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        base = str(served.base_url).rstrip("/")
        page.goto(f"{base}/customers/c1")
        expect(page.locator("h1")).to_have_text("Sign in")
        page.fill("#key", shops.tokens["ops"])  # an operator key: no one tenant
        page.click("button[type=submit]")
        expect(page.locator(".notice.error")).to_contain_text("key of one tenant")
        page.fill("#key", shops.tokens["a"])
        page.click("button[type=submit]")
        expect(page.locator("#customer-name")).to_have_text("Alice of A")
        assert "Bob of B" not in page.content()
        page.goto(f"{base}/customers?q=of")
        expect(page.get_by_text("Alice of A")).to_be_visible()
        assert "Bob of B" not in page.content()
        assert page.goto(f"{base}/customers/c-b").status == 404  # B's customer, unknown to A
        assert "Only in B" not in page.content()
    finally:
        context.close()


def test_open_mode_of_many_tenants_names_the_tenant_in_the_header(shops: Shops) -> None:
    app = create_app(Services(), tenants_url=shops.directory_url)  # no access file
    path = "/v1/customers/c1/tabs/timeline"
    with serve_app_in_thread(app) as client:
        bare = client.get(path)
        assert bare.status_code == 400 and "X-Ledger-Tenant" in bare.json()["detail"]
        assert "Bob of B" in names(client.get(path, headers={"X-Ledger-Tenant": "shop-b"}))
        lane = client.post("/v1/events", json=created("c-open", "Open in A"))
        assert lane.status_code == 400
        # The page has no header to send: it serves no tenant in open mode.
        page = client.get("/customers/c1")
        assert page.status_code == 400 and "key of one tenant" in page.text
        assert "Alice" not in page.text and "Bob" not in page.text
