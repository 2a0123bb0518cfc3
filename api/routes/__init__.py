"""The JSON API, one router per resource: `events` (appending), `customers`
(a customer's tabs and erasure), `duplicates` (possible duplicates and "not a
duplicate" marks), `merging` (merging customers and its undo), `tasks` (task
actions), `adding` (a new note or task), `audit` (history and the chain's
head), `operations` (projection status, probes, metrics).

Every endpoint translates HTTP to a call on the service layer (`services/`)
and its answer back to JSON; no rule lives here. Endpoints that touch the
database are plain `def`s: FastAPI runs them in its thread pool, each with a
pooled connection, because the drivers block.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    adding,
    audit,
    customers,
    duplicates,
    events,
    merging,
    operations,
    tasks,
)

# In the order `create_app` includes them.
ROUTERS: tuple[APIRouter, ...] = (
    events.router,
    customers.router,
    duplicates.router,
    merging.router,
    tasks.router,
    adding.router,
    audit.router,
    operations.router,
)
