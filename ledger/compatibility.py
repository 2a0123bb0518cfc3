"""The compatibility gate of the event contracts (`ledger schemas check`).

Every version of a type ever published is in `schemas/versions/<type>/v<N>.json`
(ledger.schemas). Stored events never change, and producers may still send an
older version, so for every type:

- the current model must accept exactly what its published version does (a
  changed contract needs a new version, not a rewritten file);
- the current version must be published;
- every older version must reach the current one through the upcasters;
- each upcaster must turn any document of version N into a valid one of N + 1:
  checked on documents generated from version N's schema (Hypothesis), whose
  output is validated against version N + 1's schema (jsonschema) and, for the
  current version, by the model itself.

Hypothesis, hypothesis-jsonschema and jsonschema come with the `check` extra;
they are imported only when the check runs (`CheckUnavailable` without them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ledger.events.catalogue import PAYLOADS
from ledger.events.common import Payload, Upcaster
from ledger.schemas import contract_of, payload_schema, published_versions, version_path

DEFAULT_EXAMPLES = 50
EXTRA_HINT = "pip install 'interaction-ledger[check]'"


class CheckUnavailable(RuntimeError):
    """The libraries of the `check` extra are not installed."""


@dataclass(frozen=True)
class Problem:
    """One incompatibility: the type, the version it concerns, and why."""

    type: str
    version: int
    reason: str

    def __str__(self) -> str:
        return f"{self.type} v{self.version}: {self.reason}"


@dataclass
class Report:
    """What the check found, and how much it checked."""

    problems: list[Problem] = field(default_factory=list)
    types: int = 0
    published: int = 0
    upcasters: int = 0
    examples: int = 0

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """One line: what was checked."""
        plural = "" if self.upcasters == 1 else "s"
        return (
            f"{self.types} types, {self.published} published versions, "
            f"{self.upcasters} upcaster{plural} checked on {self.examples} examples"
        )


# Validates one document of a version; the error's message, or None when valid.
_Validate = Callable[[dict[str, Any]], str | None]


def check_compatibility(
    schemas_dir: Path,
    payloads: Mapping[str, type[Payload]] = PAYLOADS,
    examples: int = DEFAULT_EXAMPLES,
) -> Report:
    """Check every type of `payloads` against its published versions in
    `schemas_dir` (see the module's docstring). CheckUnavailable without the
    `check` extra."""
    _require_extra()
    report = Report(types=len(payloads), examples=examples)
    for event_type, payload in payloads.items():
        report.problems.extend(_check_type(schemas_dir, event_type, payload, examples, report))
    return report


def _require_extra() -> None:
    try:
        import hypothesis  # noqa: F401
        import hypothesis_jsonschema  # noqa: F401
        import jsonschema  # noqa: F401
    except ImportError as exc:
        raise CheckUnavailable(
            f"`ledger schemas check` needs the `check` extra ({exc.name} is missing): {EXTRA_HINT}"
        ) from None


def _check_type(
    schemas_dir: Path, event_type: str, payload: type[Payload], examples: int, report: Report
) -> list[Problem]:
    current = payload.schema_version
    published = published_versions(schemas_dir, event_type)
    report.published += len(published)
    problems = []

    def problem(version: int, reason: str) -> None:
        problems.append(Problem(event_type, version, reason))

    schemas: dict[int, dict[str, Any]] = {
        v: json.loads(version_path(schemas_dir, event_type, v).read_text()) for v in published
    }
    model_schema = payload_schema(payload)
    if current not in schemas:
        problem(current, f"version {current} not published: run `ledger schemas export`")
    elif contract_of(schemas[current]) != contract_of(model_schema):
        problem(current, "contract changed without a new version")
    for version in published:
        if version > current:
            problem(version, f"published, but the model's current version is {current}")
    for version in range(1, current):
        if version not in payload.upcasters:
            problem(version + 1, f"no upcaster from {version}")
        if version not in schemas:
            problem(
                version, f"version {version} has no published schema: its upcaster is unchecked"
            )
    for version in range(1, current):
        upcaster = payload.upcasters.get(version)
        if upcaster is None or version not in schemas:
            continue
        target = version + 1
        report.upcasters += 1
        validate = _model_validator(payload) if target == current else None
        target_schema = model_schema if target == current else schemas.get(target)
        if target_schema is None:
            continue  # reported above: the next version is not published
        found = _breaking_example(
            schemas[version], upcaster, _schema_validator(target_schema), validate, examples
        )
        if found is not None:
            example, error = found
            problem(
                target,
                f"upcaster {version}->{target} breaks version {target}: "
                f"{json.dumps(example, ensure_ascii=False)} -> {error}",
            )
    return problems


def _schema_validator(schema: dict[str, Any]) -> _Validate:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def validate(data: dict[str, Any]) -> str | None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"{where}: {error.message}"

    return validate


def _model_validator(payload: type[Payload]) -> _Validate:
    def validate(data: dict[str, Any]) -> str | None:
        try:
            payload.model_validate_json(json.dumps(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            return f"{where}: {first['msg']}"
        return None

    return validate


def _breaking_example(
    schema: dict[str, Any],
    upcaster: Upcaster,
    validate: _Validate,
    validate_model: _Validate | None,
    examples: int,
) -> tuple[dict[str, Any], str] | None:
    """The simplest generated document of `schema` that `upcaster` turns into
    one the next version refuses, with why; None when none of `examples` is."""
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample
    from hypothesis_jsonschema import from_schema

    def error_of(data: Any) -> str | None:
        try:
            out = upcaster(dict(data))
        except Exception as exc:  # an upcaster that raises breaks the next version too
            return f"the upcaster raised {type(exc).__name__}: {exc}"
        if not isinstance(out, dict):
            return f"the upcaster returned {type(out).__name__}, not an object"
        error = validate(out)
        if error is None and validate_model is not None:
            error = validate_model(out)
        return error

    try:
        example = find(
            from_schema(schema),
            lambda data: error_of(data) is not None,
            settings=settings(
                max_examples=examples,
                database=None,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except NoSuchExample:
        return None
    error = error_of(example)
    assert isinstance(example, dict) and error is not None  # what `find` was asked for
    return example, error
