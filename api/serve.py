"""Running the API under uvicorn, configured from the environment.

`ledger serve` puts its options into `LEDGER_*` variables and starts uvicorn
with `from_environment` as the app factory, so one worker or several (each its
own process) are configured the same way.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time

from fastapi import FastAPI

from api.access import LiveAccess
from api.app import create_app
from api.loglines import BatchedLines
from api.state import DEFAULT_MAX_BODY, DEFAULT_MAX_ITEMS, OPEN_MODE_USER
from api.tenancy import DEFAULT_PER_SERVER
from ledger.environment import (
    ACCESS_FILE_ENV,
    APPEND_WRITER_ENV,
    CORS_ENV,
    DEFAULT_API_POOL_SIZE,
    DEFAULT_APPEND_WRITER,
    MAX_BODY_ENV,
    MAX_ITEMS_ENV,
    PAGE_USER_ENV,
    POOL_SIZE_ENV,
    PROTECT_METRICS_ENV,
    SESSION_SECRET_ENV,
    TENANTS_PER_SERVER_ENV,
)
from services.bootstrap import Services
from services.tenants import serving_directory

# Appenders a server keeps open between appends of several events (each holds a
# database connection): a batch then loads only the customers no earlier
# request touched (services.appending.KeptAppenders).
KEPT_APPENDERS = 4


def cors_origins(value: str | None) -> list[str]:
    """The origins a comma-separated setting lists, blanks dropped (none: no CORS)."""
    return [o.strip() for o in (value or "").split(",") if o.strip()]


def from_environment() -> FastAPI:
    """uvicorn's app factory: the app as the `LEDGER_*` variables configure it, so
    every worker process builds the same one."""
    configure_logging()
    access_path = os.environ.get(ACCESS_FILE_ENV) or None
    access = LiveAccess.load(access_path) if access_path else None
    if access is not None:
        reload_on_sighup(access)
    return create_app(
        Services(kept_appenders=KEPT_APPENDERS),
        tenants_url=serving_directory(None, None, None),
        tenants_per_server=int(os.environ.get(TENANTS_PER_SERVER_ENV) or DEFAULT_PER_SERVER),
        access=access,
        cors_origins=cors_origins(os.environ.get(CORS_ENV)),
        max_body=int(os.environ.get(MAX_BODY_ENV) or DEFAULT_MAX_BODY),
        max_items=int(os.environ.get(MAX_ITEMS_ENV) or DEFAULT_MAX_ITEMS),
        pool_size=int(os.environ.get(POOL_SIZE_ENV) or DEFAULT_API_POOL_SIZE),
        protect_metrics=os.environ.get(PROTECT_METRICS_ENV, "0") in ("1", "true", "yes"),
        page_user=os.environ.get(PAGE_USER_ENV) or OPEN_MODE_USER,
        append_writer=os.environ.get(APPEND_WRITER_ENV) or DEFAULT_APPEND_WRITER,
    )


def reload_on_sighup(access: LiveAccess) -> None:
    """SIGHUP loads the access file now (it is also watched for changes). Only
    a process's main thread may set a handler; under `--workers` the signal
    goes to uvicorn's supervisor, which restarts the workers, and each loads
    the file as it starts."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        # Not here: the handler interrupts the main thread, which may hold the
        # access file's lock at that moment.
        threading.Thread(target=access.reload, name="access-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, handler)


def configure_logging() -> None:
    """The ledger's and uvicorn's log lines go to stderr, timestamped, at INFO
    (in batches: `api.loglines`). Once a process: each worker of `--workers`,
    a process of its own, configures its logging as the first process did."""
    if any(isinstance(h, BatchedLines) for h in logging.getLogger("ledger").handlers):
        return
    handler = BatchedLines(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for name in ("ledger", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


class _Formatter(logging.Formatter):
    """logging's Formatter, its time text made once a second instead of once a line
    (every request logs a line; the same text: tests/unit/test_serve_logging.py)."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._second  # one read: another thread may replace it meanwhile
        if cached[0] != second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            cached = self._second = (second, text)
        if self.default_msec_format is None:
            return cached[1]
        return self.default_msec_format % (cached[1], record.msecs)


def run(host: str, port: int, workers: int) -> None:
    """Serve the API under uvicorn until stopped (SIGTERM: a graceful shutdown,
    exit 0); several workers share one session secret and one metrics directory."""
    configure_logging()
    # The card page's session cookies must verify in every worker: without a
    # configured secret, this server's workers share one made now.
    if not os.environ.get(SESSION_SECRET_ENV):
        os.environ[SESSION_SECRET_ENV] = secrets.token_urlsafe(32)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under
    # the handler that was in place before it: make that one a no-op, so a
    # clean shutdown exits 0 instead of "killed by SIGTERM".
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker process counts on its own; prometheus-client's multiprocess
        # mode keeps the counts in files here and a scrape adds them up.
        metrics_dir = tempfile.mkdtemp(prefix="ledger-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _run_uvicorn(host, port, workers)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(host: str, port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        "api.serve:from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Our middleware logs one line per request, with its request id.
        access_log=False,
        log_config=None,
        # SIGTERM: stop accepting, let in-flight requests finish (an append
        # commits whole or not at all), then close.
        timeout_graceful_shutdown=30,
        server_header=False,
    )
