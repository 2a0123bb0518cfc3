"""The tenant workers' command-line defaults are the workers' own. The
`--tenants` options take them from `WorkerTuning`; `--max-backoff`, shared with
the single-store mode of `projections run` and `relay run`
(cli.options.MAX_BACKOFF_OPTION), from `ledger.backoff.MAX_BACKOFF_S`, as
`WorkerTuning` does. A default written out again must still agree."""

from __future__ import annotations

import click
import pytest

from cli.projections import run as projections_run
from cli.relay import run as relay_run
from services.workers import WorkerTuning

# Option -> the WorkerTuning field it sets (cli.workers.worker_options).
FIELDS = {
    "claim_interval": "claim_interval",
    "threads": "threads",
    "idle_close": "idle_close_s",
    "open_tenants": "open_jobs",
    "max_backoff": "max_backoff",
}


@pytest.mark.parametrize("command", [projections_run, relay_run], ids=["projections", "relay"])
def test_the_options_default_to_the_workers_tuning(command: click.Command) -> None:
    defaults = {p.name: p.default for p in command.params}
    tuning = WorkerTuning()
    for option, field in FIELDS.items():
        assert defaults[option] == getattr(tuning, field), option
