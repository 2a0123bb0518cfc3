"""Every environment variable is named once (ledger.environment) and documented."""

from __future__ import annotations

import re
from pathlib import Path

from ledger.environment import ENVIRONMENT, KAFKA_ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "projections", "relay", "consumers", "cli", "api")
_NAME_LITERAL = re.compile(r"[\"']LEDGER_[A-Z_]+[\"']")


def test_no_module_spells_a_variable_name_of_its_own() -> None:
    spelled = [
        f"{path.relative_to(ROOT)}: {match.group()}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "environment.py"
        for match in _NAME_LITERAL.finditer(path.read_text())
    ]
    assert spelled == []


def test_every_variable_is_documented() -> None:
    docs = "\n".join(
        p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    )
    missing = [name for name in [*ENVIRONMENT, KAFKA_ENV_PREFIX] if name not in docs]
    assert missing == []
