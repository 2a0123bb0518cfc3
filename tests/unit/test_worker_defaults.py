"""`--max-backoff`, shared by `projections run` and `relay run` with their
single-store mode (cli.options.MAX_BACKOFF_OPTION): with `--tenants` its
default must be the tenant workers' own (both are `ledger.backoff.MAX_BACKOFF_S`;
their other options take their defaults from `WorkerTuning` itself)."""

from __future__ import annotations

import click
import pytest

from cli.projections import run as projections_run
from cli.relay import run as relay_run
from services.workers import WorkerTuning


@pytest.mark.parametrize("command", [projections_run, relay_run], ids=["projections", "relay"])
def test_the_max_backoff_option_defaults_to_the_workers_tuning(command: click.Command) -> None:
    defaults = {p.name: p.default for p in command.params}
    assert defaults["max_backoff"] == WorkerTuning().max_backoff
