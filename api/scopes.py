"""The access keys' scopes: the one list the API checks, the access file is
validated against and `ledger access new-key --scope` offers."""

from __future__ import annotations

# scope -> what it grants (docs/http.md has the same table)
SCOPES: dict[str, str] = {
    "ingest": "POST /v1/events",
    "read": "the customer tabs and the card page",
    "tasks": "task actions, as the key's own user",
    "act-as": "task actions on behalf of the user named in the request",
    "audit": "the audit endpoints",
    "ops": "projection status; /metrics when metrics are protected",
    "erase": "POST /v1/customers/{id}/erase: erase a customer's personal data",
    "merge": "POST /v1/customers/{id}/merge, /unmerge and /not-duplicates: merge customers, "
    "undo a merge, mark two customers not a duplicate, as the key's user (or, with act-as, "
    "the user named in the request)",
}
