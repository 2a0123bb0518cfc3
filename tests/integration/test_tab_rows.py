"""`ledger tab` prints a tab's rows as read (`tab_rows`); the HTTP API serves the
same rows validated into the tab's pydantic model (`tab_answer`). Both stores,
every tab, every kind of item: the two must be the same JSON, byte for byte."""

from __future__ import annotations

import json

from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.demo import DEMO_CUSTOMERS, demo_events
from projections.tabs import TABS
from services.bootstrap import prepare_store
from services.tabs import tab_answer, tab_request, tab_rows
from tests.factories import append_to_url


def test_every_tabs_rows_are_its_models_json(store_url: str) -> None:
    append_to_url(store_url, demo_events())
    shown = 0
    with Connection(parse_database_url(store_url)) as conn:
        prepare_store(conn)
        for customer_id, *_ in DEMO_CUSTOMERS:
            for tab in TABS:
                # A short page, so that `next_cursor` is set on the longer tabs.
                request = tab_request(customer_id, tab, limit=3)
                rows = tab_rows(conn, request)
                dumped = tab_answer(conn, request).model_dump(mode="json")
                assert json.dumps(rows) == json.dumps(dumped), (customer_id, tab)
                shown += len(rows["items"])
                if tab == "tasks":
                    viewer = tab_request(customer_id, tab, viewer="u-1")
                    answer = tab_answer(conn, viewer).model_dump(mode="json")
                    assert json.dumps(tab_rows(conn, viewer)) == json.dumps(answer)
    assert shown > 3 * len(TABS)  # the demo has items on every tab
