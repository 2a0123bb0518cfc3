"""Operating the ledger: the projections' and the relay's status, running
and rebuilding projections."""

from __future__ import annotations

from typing import Any

from ledger.db import Connection
from projections import registry
from services.errors import service_errors


def projections_status(conn: Connection) -> dict[str, Any]:
    """`ledger projections status --format json`'s answer."""
    from projections.status import projection_status

    with service_errors():
        head, rows = projection_status(conn, registry.select(()))
    return {"head": head, "projections": [r.as_json() for r in rows]}
