"""Waiting out failures: the delays between reconnection attempts, shared by
every follower of the events table (the projection runner, the relay), the
tenant workers and the subscriber kit. No imports of the ledger's own: the
command line's options take their default from here at start-up."""

from __future__ import annotations

# The longest wait between reconnection attempts unless told otherwise: the
# projection followers', the relay's and the tenant workers' (`--max-backoff`).
MAX_BACKOFF_S = 30.0


class Backoff:
    """Delays that double from `first` up to `maximum`, until `reset()`."""

    def __init__(self, maximum: float, first: float = 0.25) -> None:
        self.first = first
        self.maximum = maximum
        self.current = first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.maximum, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.first
