"""Counting a PostgreSQL client's round trips from libpq's own trace of the
protocol (the real server answers; nothing stands in for it)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import pq

# Frontend messages after which the client waits for the server: a simple
# Query, the Sync ending an extended-protocol statement, and the end of a COPY.
_WAITS = ("Query", "Sync", "CopyDone")


@dataclass
class Trace:
    path: str
    _read: int = 0  # lines already taken

    def take(self) -> list[str]:
        """One entry per round trip since the last call: the message that waited,
        with the statements it ran (pipelined ones joined by " + ")."""
        with open(self.path) as f:
            lines = f.read().splitlines()
        new, self._read = lines[self._read :], len(lines)
        waits: list[str] = []
        statements: list[str] = []
        for line in new:
            parts = line.split("\t")
            if len(parts) < 3 or parts[0] != "F":
                continue
            if parts[2] in ("Parse", "Query") and len(parts) > 3:
                statements.append(parts[3][:90])
            if parts[2] not in _WAITS:
                continue
            trip, statements = " + ".join(statements), []
            # A pool's new connection is set up by its background thread, once, not
            # per statement: not a round trip of the work being counted.
            if "idle_in_transaction_session_timeout" not in trip:
                waits.append(f"{parts[2]}: {trip}")
        return waits


@contextmanager
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Trace]:
    """Every PostgreSQL connection opened inside (pools included) writes its
    protocol messages to one trace."""
    fd, path = tempfile.mkstemp(suffix=".pqtrace")
    connect = psycopg.Connection.connect.__func__  # type: ignore[attr-defined]

    def traced_connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        conn = connect(cls, *args, **kwargs)
        conn.pgconn.trace(fd)
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        return conn

    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(traced_connect))
    monkeypatch.setattr(psycopg, "connect", psycopg.Connection.connect)
    try:
        yield Trace(path)
    finally:
        os.close(fd)
        os.unlink(path)
