"""The compatibility gate: published versions, the check, and `ledger schemas check`."""

from __future__ import annotations

import functools
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from cli import schemas as schemas_cli
from cli.main import ledger
from ledger.compatibility import Problem, check_compatibility
from ledger.events.catalogue import PAYLOADS
from ledger.events.common import Payload, Upcaster
from ledger.events.note import NoteAdded
from ledger.events.visit import VisitRecorded
from ledger.schemas import (
    ContractChanged,
    published_versions,
    version_path,
    write_version_schemas,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = 50


def _keeps_empty_campaign(data: dict[str, Any]) -> dict[str, Any]:
    # The first version of the upcaster: an empty campaign became utm.campaign "".
    upcast = {k: v for k, v in data.items() if k != "campaign"}
    if data.get("campaign") is not None:
        upcast["utm"] = {"campaign": data["campaign"]}
    return upcast


class KeepsEmptyCampaign(VisitRecorded):
    upcasters: ClassVar[Mapping[int, Upcaster]] = {1: _keeps_empty_campaign}


def with_payload(payload: type[Payload]) -> dict[str, type[Payload]]:
    """The catalogue with `payload` in place of its type's class."""
    return {**PAYLOADS, payload.type_name: payload}


def check(
    schemas_dir: Path, payloads: Mapping[str, type[Payload]], examples: int = EXAMPLES
) -> list[Problem]:
    return check_compatibility(schemas_dir, payloads, examples=examples).problems


@pytest.fixture
def schemas_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS / "versions", copy / "versions")
    return copy


def test_every_type_is_published_at_every_version() -> None:
    for event_type, payload in PAYLOADS.items():
        assert published_versions(SCHEMAS, event_type) == list(
            range(1, payload.schema_version + 1)
        ), event_type
    v1 = json.loads(version_path(SCHEMAS, "visit.recorded", 1).read_text())
    assert v1["x-schema-version"] == 1
    assert "campaign" in v1["properties"] and "utm" not in v1["properties"]


def test_the_committed_schemas_pass() -> None:
    report = check_compatibility(SCHEMAS, PAYLOADS, examples=EXAMPLES)
    assert report.problems == []
    assert report.summary() == "32 types, 33 published versions, 1 upcaster checked on 50 examples"


def test_the_gate_finds_an_upcaster_that_breaks_the_next_version() -> None:
    # The first upcaster kept version 1's empty campaign, which version 2 refuses:
    # the gate found it on generated examples.
    [problem] = check(SCHEMAS, with_payload(KeepsEmptyCampaign))
    assert (problem.type, problem.version) == ("visit.recorded", 2)
    assert problem.reason.startswith("upcaster 1->2 breaks version 2: ")
    assert '"campaign": ""' in problem.reason


def test_a_changed_contract_without_a_new_version_fails() -> None:
    class NoteWithTitle(NoteAdded):
        title: str  # a new required field, same version

    assert check(SCHEMAS, with_payload(NoteWithTitle) | {"visit.recorded": VisitRecorded}) == [
        Problem("note.added", 1, "contract changed without a new version")
    ]


def test_an_edited_description_is_no_contract_change() -> None:
    class DocumentedNote(NoteAdded):
        """A note, described differently."""

    assert check(SCHEMAS, {"note.added": DocumentedNote}) == []


def test_an_unpublished_current_version_fails(schemas_copy: Path) -> None:
    version_path(schemas_copy, "note.added", 1).unlink()
    assert check(schemas_copy, {"note.added": NoteAdded}) == [
        Problem("note.added", 1, "version 1 not published: run `ledger schemas export`")
    ]


def test_a_new_version_without_an_upcaster_fails(schemas_copy: Path) -> None:
    class VisitV3(VisitRecorded):
        schema_version = 3
        referrer: str | None = None

    write_version_schemas(schemas_copy, {"visit.recorded": VisitV3})
    assert published_versions(schemas_copy, "visit.recorded") == [1, 2, 3]
    assert check(schemas_copy, {"visit.recorded": VisitV3}) == [
        Problem("visit.recorded", 3, "no upcaster from 2")
    ]


def test_an_upcaster_of_the_wrong_shape_fails() -> None:
    def utm_as_string(data: dict[str, Any]) -> dict[str, Any]:
        upcast = {k: v for k, v in data.items() if k != "campaign"}
        if data.get("campaign") is not None:
            upcast["utm"] = data["campaign"]
        return upcast

    class StringUtm(VisitRecorded):
        upcasters: ClassVar[Mapping[int, Upcaster]] = {1: utm_as_string}

    [problem] = check(SCHEMAS, {"visit.recorded": StringUtm})
    assert (problem.type, problem.version) == ("visit.recorded", 2)
    assert problem.reason.startswith("upcaster 1->2 breaks version 2: {")
    assert "utm: " in problem.reason and "is not valid under any of the given schemas" in (
        problem.reason
    )
    assert "\n" not in problem.reason


def test_an_upcaster_that_raises_fails() -> None:
    def strict_upcaster(data: dict[str, Any]) -> dict[str, Any]:
        return {**VisitRecorded.upcasters[1](data), "site": data["site"]}

    class Raising(VisitRecorded):
        upcasters: ClassVar[Mapping[int, Upcaster]] = {1: strict_upcaster}

    [problem] = check(SCHEMAS, {"visit.recorded": Raising})
    assert "the upcaster raised KeyError: 'site'" in problem.reason


def test_a_wrong_field_type_is_reported_with_its_path() -> None:
    def pages_as_text(data: dict[str, Any]) -> dict[str, Any]:
        return {**VisitRecorded.upcasters[1](data), "pages_viewed": "1"}

    class TextPages(VisitRecorded):
        upcasters: ClassVar[Mapping[int, Upcaster]] = {1: pages_as_text}

    [problem] = check(SCHEMAS, {"visit.recorded": TextPages})
    assert "pages_viewed: '1' is not valid under any of the given schemas" in problem.reason


def test_the_check_is_deterministic() -> None:
    payloads = {"visit.recorded": VisitRecorded}
    assert check(SCHEMAS, payloads) == check(SCHEMAS, payloads)


def test_export_publishes_missing_versions_and_never_rewrites_one(tmp_path: Path) -> None:
    written = write_version_schemas(tmp_path, {"note.added": NoteAdded})
    assert written == [version_path(tmp_path, "note.added", 1)]
    published = written[0].read_text()
    assert write_version_schemas(tmp_path, {"note.added": NoteAdded}) == []

    class NoteWithTitle(NoteAdded):
        title: str

    with pytest.raises(
        ContractChanged, match=r"^contract changed without a new version: note\.added "
    ):
        write_version_schemas(
            tmp_path, {"note.added": NoteWithTitle, "visit.recorded": VisitRecorded}
        )
    assert written[0].read_text() == published
    # Refused as a whole: the other type's missing version was not written either.
    assert published_versions(tmp_path, "visit.recorded") == []


def test_export_refuses_a_changed_contract(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    shutil.copytree(SCHEMAS / "versions", out / "versions")
    path = version_path(out, "note.added", 1)
    schema = json.loads(path.read_text())
    schema["required"].append("title")
    schema["properties"]["title"] = {"type": "string"}
    path.write_text(json.dumps(schema))
    result = CliRunner().invoke(ledger, ["schemas", "export", "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(
        "error: contract changed without a new version: note.added"
    )
    assert json.loads(path.read_text()) == schema
    assert not (out / "events").exists()


def _cli_check(monkeypatch: pytest.MonkeyPatch, payloads: Mapping[str, type[Payload]]) -> None:
    monkeypatch.setattr(
        schemas_cli,
        "check_compatibility",
        functools.partial(check_compatibility, payloads=payloads),
    )


def test_cli_check_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_check(monkeypatch, with_payload(VisitRecorded))
    result = CliRunner().invoke(ledger, ["schemas", "check", "--dir", str(SCHEMAS)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "ok: 32 types, 33 published versions, 1 upcaster checked on 50 examples\n"
    )


def test_cli_check_problems(monkeypatch: pytest.MonkeyPatch, schemas_copy: Path) -> None:
    _cli_check(monkeypatch, with_payload(VisitRecorded))
    version_path(schemas_copy, "note.added", 1).unlink()
    args = ["schemas", "check", "--dir", str(schemas_copy), "--examples", "5"]
    result = CliRunner().invoke(ledger, args)
    assert result.exit_code == 1
    assert result.stdout == "note.added v1: version 1 not published: run `ledger schemas export`\n"
    result = CliRunner().invoke(ledger, [*args, "--format", "json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "problems": [
            {
                "type": "note.added",
                "version": 1,
                "reason": "version 1 not published: run `ledger schemas export`",
            }
        ],
    }


def test_cli_check_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hypothesis_jsonschema", None)
    result = CliRunner().invoke(ledger, ["schemas", "check", "--dir", str(SCHEMAS)])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: `ledger schemas check` needs the `check` extra (hypothesis_jsonschema is "
        "missing): pip install 'interaction-ledger[check]'\n"
    )
