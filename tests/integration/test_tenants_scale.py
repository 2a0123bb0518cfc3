"""The scale run of a hosted deployment, CI-sized (the full run is
`python -m bench.tenants --part soak`): three databases standing in for three
servers, tenants spread over them, projection and relay workers sharing the
tenants out, appends spread over the tenants while a worker is killed with
SIGKILL every second or so. At the end every tenant's read models equal a rebuild
from its events, the topic holds every event of every tenant (key
TENANT/CUSTOMER_ID, first deliveries in order per customer), and every chain
verifies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.tenants import soak

if TYPE_CHECKING:
    from tests.kafka_broker import TansuBroker


def test_tenants_spread_over_three_servers_survive_killed_workers(
    kafka_broker: TansuBroker,
) -> None:
    result = soak(
        servers=3,
        tenants=9,
        events=120,
        batch=20,
        workers=3,
        kill_every=1.0,
        claim_interval=0.5,
        bootstrap=kafka_broker.bootstrap,
        catch_up_timeout=90,
    )
    assert result["ok"], result
    assert result["kills"] >= 2, result
    assert result["events"] == 9 * 120
