"""`merged_customers`, what the card page's "Merged here" notice reads: who is
merged into a card, by name, since when, and whether the undo window is still
open; on both stores."""

from __future__ import annotations

from datetime import datetime

import pytest

from ledger.application import LedgerApplication
from ledger.db import Connection
from ledger.rights import ALLOW_ALL
from services.bootstrap import prepare_store
from services.merging import (
    MergeRequest,
    UnmergeRequest,
    customer_name,
    merge_customers,
    merged_customers,
    unmerge_customers,
)
from tests.factories import append_ok, event


def test_merged_customers_by_name_since_when_and_whether_undoable(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    append_ok(
        app,
        [
            event("customer.created", "c-1", {"card": {"name": "Anna Petrova"}}),
            event("customer.created", "c-2", {"card": {"name": "A. Petrova"}}),
            event("customer.created", "c-3", {"card": {"phone": "+49 30 1234567"}}),
        ],
    )
    with Connection(app.url) as conn:
        prepare_store(conn)
        assert merged_customers(conn, "c-1") == []
        request = MergeRequest("c-1", ("c-2", "c-3"), "u-1", "one person", confirm=True)
        merge_customers(app, conn, ALLOW_ALL, request)
        monkeypatch.setenv("LEDGER_UNDO_WINDOW", "30d")
        merged = merged_customers(conn, "c-1")
        assert [(m.customer_id, m.name, m.undoable) for m in merged] == [
            ("c-2", "A. Petrova", True),
            ("c-3", None, True),
        ]
        assert datetime.fromisoformat(merged[0].merged_at).tzinfo is not None
        assert merged_customers(conn, "c-2") == []  # an absorbed customer holds no one
        assert customer_name(conn, "c-2") == "A. Petrova"  # its own name still
        monkeypatch.setenv("LEDGER_UNDO_WINDOW", "0s")
        assert [m.undoable for m in merged_customers(conn, "c-1")] == [False, False]
        # A setting that is no duration does not hide the merges: the undo says so.
        monkeypatch.setenv("LEDGER_UNDO_WINDOW", "soon")
        assert [m.undoable for m in merged_customers(conn, "c-1")] == [True, True]
        monkeypatch.delenv("LEDGER_UNDO_WINDOW")
        unmerge_customers(app, conn, ALLOW_ALL, UnmergeRequest("c-1", "c-2", "u-1", "two"))
        assert [m.customer_id for m in merged_customers(conn, "c-1")] == ["c-3"]
