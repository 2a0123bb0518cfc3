"""Running the real `ledger` console script in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli.main import ledger

LEDGER = str(Path(sys.executable).parent / "ledger")


def run_ledger(
    *args: str,
    db: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    if db is not None:
        full_env["LEDGER_DATABASE_URL"] = db
    return subprocess.run(
        [LEDGER, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def ledger_cli(*args: str, db: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in this process (faster than a subprocess), answering like `run_ledger`."""
    result = CliRunner().invoke(ledger, ["--db", db, *args], input=stdin)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
