"""JSON Schema export of the event contracts.

`schemas/events/<type>.json` is what a producer sends for one type;
`schemas/envelope.json` accepts any type; `schemas/recorded-envelope.json` is
the stored envelope readers and Kafka consumers get. Each carries its schema
version as `x-schema-version`. A test fails when the committed files differ.
`schemas/versions/<type>/v<N>.json` holds the `data` schema of every published
version (below): written once, never rewritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.events.catalogue import INBOUND_ADAPTER, INBOUND_MODELS, PAYLOADS, RECORDED_ADAPTER
from ledger.events.common import Payload


def render_schemas() -> dict[str, str]:
    """Relative path -> file content, for every schema file."""
    files: dict[str, Any] = {}
    for event_type, model in INBOUND_MODELS.items():
        schema = model.model_json_schema()
        schema["$id"] = f"events/{event_type}.json"
        schema["x-schema-version"] = PAYLOADS[event_type].schema_version
        files[f"events/{event_type}.json"] = schema
    envelope = INBOUND_ADAPTER.json_schema()
    envelope["title"] = "LedgerEvent"
    envelope["description"] = "Any event a producer may send; `type` selects the payload."
    files["envelope.json"] = envelope
    recorded = RECORDED_ADAPTER.json_schema()
    recorded["title"] = "RecordedLedgerEvent"
    recorded["description"] = (
        "A stored event as readers and Kafka consumers receive it: the producer's "
        "envelope plus position, recorded_at, schema_version and its stream."
    )
    files["recorded-envelope.json"] = recorded
    return {
        path: json.dumps(schema, indent=2, sort_keys=True) + "\n" for path, schema in files.items()
    }


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema file under `out_dir`, and publish each type's current
    version where it is not yet (`write_version_schemas`): the paths written.
    ContractChanged, before anything is written, when a published version's
    contract changed."""
    written = write_version_schemas(out_dir)
    for rel, content in render_schemas().items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    return written


# --- Published versions -----------------------------------------------------
#
# `schemas/versions/<type>/v<N>.json` is the JSON Schema of the `data` of version
# N of a type, as it was published. Stored events and producers' older versions
# are read through the upcasters (ledger.upcasting) against these files, so a
# published version is never rewritten: `ledger schemas check`
# (ledger.compatibility) holds the models and upcasters to them.

VERSIONS_DIR = "versions"

# Annotations only: a changed title or description does not change what a
# version accepts, so it needs no new version.
_ANNOTATIONS = frozenset({"title", "description", "examples", "$id", "x-schema-version"})
# Keywords whose value maps names (of properties, definitions) to schemas.
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions"})


class ContractChanged(ValueError):
    """A model's schema differs from the published file of the same version."""


def version_path(schemas_dir: Path, event_type: str, version: int) -> Path:
    """Where version `version` of `event_type`'s `data` schema is published."""
    return schemas_dir / VERSIONS_DIR / event_type / f"v{version}.json"


def published_versions(schemas_dir: Path, event_type: str) -> list[int]:
    """The versions of `event_type` with a published file, oldest first."""
    folder = schemas_dir / VERSIONS_DIR / event_type
    if not folder.is_dir():
        return []
    found = (re.fullmatch(r"v([1-9]\d*)\.json", p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def payload_schema(payload: type[Payload]) -> dict[str, Any]:
    """The JSON Schema of the `data` of `payload`'s current version, as published."""
    schema = payload.model_json_schema()
    schema["$id"] = f"{VERSIONS_DIR}/{payload.type_name}/v{payload.schema_version}.json"
    schema["x-schema-version"] = payload.schema_version
    return schema


def schema_text(schema: dict[str, Any]) -> str:
    """A schema file's content."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def contract_of(schema: Any) -> Any:
    """`schema` without its annotations: what decides which documents it accepts."""
    if isinstance(schema, list):
        return [contract_of(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: (
            {name: contract_of(sub) for name, sub in value.items()}
            if key in _NAMED_SCHEMAS and isinstance(value, dict)
            else contract_of(value)
        )
        for key, value in schema.items()
        if key not in _ANNOTATIONS
    }


def changed_contracts(
    schemas_dir: Path, payloads: Mapping[str, type[Payload]] = PAYLOADS
) -> list[str]:
    """The types whose current model no longer matches the published file of its
    version (a file that is missing is not a change)."""
    changed = []
    for event_type, payload in payloads.items():
        path = version_path(schemas_dir, event_type, payload.schema_version)
        if path.is_file() and contract_of(json.loads(path.read_text())) != contract_of(
            payload_schema(payload)
        ):
            changed.append(event_type)
    return changed


def write_version_schemas(
    schemas_dir: Path, payloads: Mapping[str, type[Payload]] = PAYLOADS
) -> list[Path]:
    """Publish each type's current version where it is not yet: the paths written.
    Never rewrites a published version; ContractChanged (and nothing written) when
    a model differs from the published file of its version."""
    changed = changed_contracts(schemas_dir, payloads)
    if changed:
        raise ContractChanged(
            f"contract changed without a new version: {', '.join(changed)} "
            "(raise schema_version and add an upcaster; published versions are never rewritten)"
        )
    written = []
    for event_type, payload in payloads.items():
        path = version_path(schemas_dir, event_type, payload.schema_version)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(schema_text(payload_schema(payload)))
            written.append(path)
    return written
