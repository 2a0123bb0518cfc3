"""Upcasting's cost: a rebuild of every read model over N events of which half
are `visit.recorded` stored in version 1 (each upcast to version 2 as it is
read), against the same rebuild with every event stored current.

    .venv/bin/python -m bench.upcast                       # SQLite, 1,000,000 events
    .venv/bin/python -m bench.upcast --store postgresql --events 200000

Prints each rebuild's events/s and the ratio old-half / all-current (the goal:
at least 0.9). The other half is bench.projections' mix of every type.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from bench.common import DEFAULT_PG, scratch_store
from bench.projections import fill, generate, rebuild_in_process

Event = tuple[str, str, dict[str, Any], datetime]


def mixed(count: int, *, old: bool) -> Iterator[Event]:
    """`count` events: bench.projections' mix, each followed by a visit of the same
    customer, in version 1 (`campaign`) when `old`, else version 2 (`utm`)."""
    for n, (customer_id, event_type, data, occurred) in enumerate(generate(count - count // 2)):
        yield customer_id, event_type, data, occurred
        if n >= count // 2:
            continue
        visit: dict[str, Any] = {
            "visit_id": f"bench-v{n}",
            "source": "newsletter",
            "channel": "email",
            "duration_s": 60 + n % 600,
        }
        if old:
            visit["campaign"] = "winter-sale"
        else:
            visit["utm"] = {"campaign": "winter-sale"}
        yield customer_id, "visit.recorded", visit, occurred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="server for a scratch schema")
    parser.add_argument("--runs", type=int, default=2, help="rebuilds of each store, alternating")
    args = parser.parse_args()
    os.environ.setdefault("LEDGER_AUTO_MIGRATE", "1")
    rates: dict[bool, list[float]] = {False: [], True: []}
    with (
        scratch_store(args.store, args.pg_url) as current_url,
        scratch_store(args.store, args.pg_url) as old_url,
    ):
        fill(current_url, args.events, mixed(args.events, old=False))
        fill(
            old_url,
            args.events,
            mixed(args.events, old=True),
            type_versions={"visit.recorded": 1},
        )
        # Alternating, so that the machine's drift weighs on both alike.
        for _ in range(args.runs):
            for old, url in ((False, current_url), (True, old_url)):
                rates[old].append(rebuild_in_process(url))
    best_current, best_old = max(rates[False]), max(rates[True])
    print(f"{args.store}, {args.events:,} events, half of them visits; best of {args.runs}")
    print(f"  every event current:                  {best_current:>10,.0f} events/s")
    print(f"  the visits stored in version 1:       {best_old:>10,.0f} events/s")
    print(f"  ratio (goal >= 0.9):                  {best_old / best_current:>10.2f}")


if __name__ == "__main__":
    main()
