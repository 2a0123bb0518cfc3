"""JSON Schema export of the event contracts.

`schemas/events/<type>.json` is what a producer sends for one type;
`schemas/envelope.json` accepts any type; `schemas/recorded-envelope.json` is
the stored envelope readers and Kafka consumers get. Each carries its schema
version as `x-schema-version`. A test fails when the committed files differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger.events.catalogue import INBOUND_ADAPTER, INBOUND_MODELS, PAYLOADS, RECORDED_ADAPTER


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
    """Write every schema file under `out_dir`; the paths written."""
    written = []
    for rel, content in render_schemas().items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    return written
