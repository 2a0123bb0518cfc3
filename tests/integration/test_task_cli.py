"""`ledger task`: the operators' twin of the API's task actions, same service."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from cli.main import ledger
from tests.factories import append_to_url, event


def task_cli(url: str, *args: str, rights: Path | None = None) -> Result:
    extra = ["--rights", str(rights)] if rights else []
    return CliRunner().invoke(ledger, ["--db", url, *extra, "task", *args])


def test_edit_complete_and_refusals(store_url: str, tmp_path: Path) -> None:
    append_to_url(
        store_url,
        [
            event("customer.created", "c1", {"card": {"name": "Ann"}}),
            event("task.created", "c1", {"task_id": "t1", "title": "Call", "due_at": None}),
        ],
    )
    edited = task_cli(
        store_url,
        "edit",
        "c1",
        "t1",
        "--as",
        "u-1",
        "--set",
        "title=Visit",
        "--set",
        "due_at=2026-12-01T10:00:00Z",
        "--format",
        "json",
    )
    assert edited.exit_code == 0, edited.output
    task = json.loads(edited.stdout)["task"]
    assert task["title"] == "Visit" and task["due_at"] == "2026-12-01T10:00:00Z"

    policy = tmp_path / "rights.toml"
    policy.write_text('[users]\nu-1 = ["tasks.delete"]\n')
    refused = task_cli(store_url, "delete", "c1", "t1", "--as", "u-2", rights=policy)
    assert refused.exit_code == 1 and "lacks the right tasks.delete" in refused.output

    done = task_cli(store_url, "complete", "c1", "t1", "--as", "u-2", "--idempotency-key", "k")
    assert done.exit_code == 0 and "completed" in done.stdout
    again = task_cli(store_url, "complete", "c1", "t1", "--as", "u-2", "--idempotency-key", "k")
    assert again.exit_code == 0 and "already done" in again.stdout
    conflict = task_cli(store_url, "complete", "c1", "t1", "--as", "u-2")
    assert conflict.exit_code == 1 and "is completed" in conflict.output
    missing = task_cli(store_url, "reopen", "c1", "nope", "--as", "u-1")
    assert missing.exit_code == 1 and "does not exist" in missing.output
    bad = task_cli(store_url, "edit", "c1", "t1", "--as", "u-1", "--set", "title")
    assert bad.exit_code == 2 and "FIELD=VALUE" in bad.output
    deleted = task_cli(store_url, "delete", "c1", "t1", "--as", "u-1", rights=policy)
    assert deleted.exit_code == 0 and "deleted" in deleted.stdout
