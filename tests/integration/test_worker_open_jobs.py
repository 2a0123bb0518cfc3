"""A tenant worker keeps a bounded number of tenants' jobs (their connections,
a relay's producer) open between passes, closing the least recently worked
first, however many busy tenants it owns (`--open-tenants`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.tenant_workers import PassResult, TenantJob, TenantWorker, WorkerSettings, WorkerTuning
from ledger.tenants import Tenant, TenantDirectory


class CountingJob:
    """A job that does nothing but count how many of its kind are open."""

    open_now = 0
    most_open = 0
    passes = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        with CountingJob.lock:
            CountingJob.open_now += 1
            CountingJob.most_open = max(CountingJob.most_open, CountingJob.open_now)

    def run_pass(self) -> PassResult:
        with CountingJob.lock:
            CountingJob.passes += 1
        time.sleep(0.005)
        return PassResult(0, 0)

    def stop(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def close(self) -> None:
        with CountingJob.lock:
            CountingJob.open_now -= 1


def test_a_worker_of_many_busy_tenants_keeps_only_open_jobs_open(tmp_path: Path) -> None:
    found = TenantDirectory(parse_database_url(f"sqlite:///{tmp_path / 'tenants.db'}"))
    with Connection(found.url) as conn:
        found.ensure(conn)
        for i in range(12):
            found.add(conn, f"shop-{i}", f"sqlite:///{tmp_path / f'shop-{i}.db'}", None)

    def make(_tenant: Tenant) -> TenantJob:
        return CountingJob()

    # Every tenant is polled (SQLite) every 20 ms: all twelve are busy.
    settings = WorkerSettings(
        "projections", tuning=WorkerTuning(poll_interval=0.02, threads=2, open_jobs=3)
    )
    worker = TenantWorker(found, make, settings, lambda _notice: None)
    running = threading.Thread(target=worker.run)
    running.start()
    try:
        deadline = time.monotonic() + 20
        while CountingJob.passes < 12 * 10:
            assert time.monotonic() < deadline, CountingJob.passes
            time.sleep(0.05)
    finally:
        worker.stop()
        running.join(30)
    # The bound, plus a job each running pass opened before closing another's.
    assert CountingJob.most_open <= settings.tuning.open_jobs + settings.tuning.threads
    assert CountingJob.open_now == 0  # stopping closes every job
