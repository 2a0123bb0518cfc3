"""Appending events: the one way in for every door (`ledger append`, `POST
/v1/events`, the demo, task actions, erasure)."""

from __future__ import annotations

import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ledger.input import InputError, InputItem
from ledger.rights import RightsPolicy
from projections.clock import iso

# Imported where used: a tab read must not pay for the append engine
# (tests/integration/test_startup.py).
if TYPE_CHECKING:
    from ledger.appending.appender import Appender
    from ledger.appending.report import AppendReport as AppendReport
    from ledger.application import LedgerApplication
    from ledger.grouping import AppendGroups as AppendGroups
    from ledger.grouping import GroupStore

from services.errors import Category, RejectedField, ServiceError, service_errors


def default_batch_size() -> int:
    """Events per insert when the caller does not say (imports the append engine)."""
    from ledger.appending.appender import DEFAULT_BATCH_SIZE

    return DEFAULT_BATCH_SIZE


def append_items(
    app: LedgerApplication,
    policy: RightsPolicy,
    items: Iterable[InputItem],
    *,
    skip_invalid: bool = False,
    batch_size: int | None = None,
) -> AppendReport:
    """Validate and store events; a body that is not NDJSON or a JSON array, or
    not UTF-8, is rejected whole with nothing stored. `batch_size`: the append
    engine's default unless given."""
    from ledger.appending.appender import DEFAULT_BATCH_SIZE, Appender

    size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    kept = _KEPT.get(app)
    if kept is not None:
        with service_errors(), kept.borrow(policy, size) as appender:
            return append_with(appender, items, skip_invalid=skip_invalid)
    with service_errors(), Appender(app, policy, batch_size=size) as appender:
        return append_with(appender, items, skip_invalid=skip_invalid)


class KeptAppenders:
    """Appenders a long-running process keeps open between appends (`ledger
    serve`): each keeps its connection and its cache of customers' states, so
    a request's batch loads only the customers no earlier request touched.

    At most `size` are open. A request that finds them all lent waits for one
    to come back, up to `BORROW_WAIT_S`, and only then opens one of its own
    (closed after): the appends are Python work under one interpreter lock, so
    more of them at once are not faster, and every appender opened under load
    started with no customer cached and, closed after, left none (under a mixed
    load most of a wide batch's time went to loading its customers). A kept
    state that another writer has changed since is brought up to the store's
    before it is used (`ledger.appending.deciding`)."""

    def __init__(self, app: LedgerApplication, size: int) -> None:
        self._app = app
        self._size = size
        self._idle: list[Appender] = []
        self._open = 0  # kept appenders, idle or lent
        self._changed = threading.Condition()
        self._closed = False

    @contextmanager
    def borrow(self, policy: RightsPolicy, batch_size: int) -> Iterator[Appender]:
        """An appender for one append under `policy`; kept again afterwards
        unless the append failed (its state may then be anything)."""
        appender, kept = self._take()
        try:
            if appender is None:
                appender = self._new()
            appender.policy, appender.batch_size = policy, batch_size
            yield appender
        except BaseException:
            if appender is not None:
                appender.close()
            self._give(None, kept)
            raise
        self._give(appender, kept)

    def _new(self) -> Appender:
        from ledger.appending.appender import Appender

        return Appender(self._app)

    def _take(self) -> tuple[Appender | None, bool]:
        """An idle kept appender, or None with leave to open one: kept (True)
        while fewer than `size` are open, else the caller's own (False)."""
        deadline = time.monotonic() + BORROW_WAIT_S
        with self._changed:
            while True:
                while self._idle:
                    appender = self._idle.pop()
                    if not appender.broken:
                        return appender, True
                    appender.close()  # the database restarted meanwhile
                    self._open -= 1
                if self._closed:
                    return None, False
                if self._open < self._size:
                    self._open += 1
                    return None, True
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, False
                self._changed.wait(left)

    def _give(self, appender: Appender | None, kept: bool) -> None:
        """Back after an append: kept for the next (None: it failed, and is closed)."""
        if not kept:
            if appender is not None:
                appender.close()
            return
        with self._changed:
            if appender is not None and not self._closed:
                self._idle.append(appender)
                appender = None
            else:
                self._open -= 1
            self._changed.notify()
        if appender is not None:
            appender.close()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._changed.notify_all()
        for appender in idle:
            appender.close()


# How long an append waits for a kept appender before it opens its own.
BORROW_WAIT_S = 1.0


_KEPT: weakref.WeakKeyDictionary[LedgerApplication, KeptAppenders] = weakref.WeakKeyDictionary()


def keep_appenders(app: LedgerApplication, size: int) -> None:
    """From now on `append_items` on `app` borrows kept appenders (at most
    `size`, see `KeptAppenders`) until `release_appenders`."""
    _KEPT[app] = KeptAppenders(app, size)


def release_appenders(app: LedgerApplication) -> None:
    """Close `app`'s kept appenders (before closing the application)."""
    kept = _KEPT.pop(app, None)
    if kept is not None:
        kept.close()


def append_with(
    appender: Appender, items: Iterable[InputItem], *, skip_invalid: bool = False
) -> AppendReport:
    """`append_items` through an Appender the caller keeps open across calls (its
    connection and its cache of customers' state)."""
    started = time.perf_counter()
    try:
        with service_errors():
            report = appender.append(items, skip_invalid=skip_invalid)
    except InputError as exc:
        observe_append(None, time.perf_counter() - started)
        raise ServiceError(Category.REJECTED, f"input: {exc}; nothing stored") from exc
    except UnicodeDecodeError as exc:
        observe_append(None, time.perf_counter() - started)
        raise ServiceError(
            Category.REJECTED, f"input is not UTF-8 text: {exc.reason}; nothing stored"
        ) from exc
    observe_append(report, time.perf_counter() - started)
    return report


def append_groups(app: LedgerApplication, policy: Callable[[], RightsPolicy]) -> AppendGroups:
    """A group committer (`ledger.grouping`): one-event appends from many
    threads stored in shared transactions, each answered with its own report,
    as `append_items` would for it alone. Its thread starts now; `close()` it."""
    from ledger.grouping import AppendGroups

    return AppendGroups(group_store(app, policy))


def group_store(app: LedgerApplication, policy: Callable[[], RightsPolicy]) -> GroupStore:
    """What stores each group of one-event appends, as `append_items` would
    store each event alone: in the group committer's thread (`append_groups`)
    or in a writer process (`services.writer_process`)."""
    from ledger.grouping import GroupStore

    return GroupStore(app, policy, append_with)


# Called after each append with its report (None: the input was unreadable) and
# its duration. `services.metrics` adds itself when a process exposes metrics;
# other processes (a CLI command) do not pay for importing prometheus-client.
APPEND_OBSERVERS: list[Callable[[AppendReport | None, float], None]] = []


def observe_append(report: AppendReport | None, seconds: float) -> None:
    """Tell the observers of one append (a writer process's appends are told
    again in the server that exposes the metrics: services.writer_process)."""
    for observer in APPEND_OBSERVERS:
        observer(report, seconds)


def rejected_fields(report: AppendReport, *, first_line_number: int = 0) -> list[RejectedField]:
    """Each reason of each rejection, flat; an item's `line` minus
    `first_line_number` is its index (the API numbers its items from 0)."""
    return [
        RejectedField(
            r.line - first_line_number, r.event_id, r.event_type, e.field, e.reason, e.code
        )
        for r in report.rejected
        for e in r.errors
    ]


def now_text() -> str:
    """The current time as events and answers carry it (UTC, `Z`)."""
    return iso(datetime.now(UTC))


def user_events(
    events: Sequence[tuple[str, str, dict[str, Any]]],
    *,
    user_id: str,
    source: str | None = None,
) -> list[InputItem]:
    """The input of a user's action from a door: each (customer, type, data) as
    an event happening now with the acting user as its actor, one input item each."""
    now = now_text()
    return [
        InputItem(
            i,
            json.dumps(
                {
                    "type": event_type,
                    "customer_id": customer_id,
                    "occurred_at": now,
                    "actor": {"kind": "user", "id": user_id},
                    "source": source,
                    "data": data,
                },
                ensure_ascii=False,
            ),
        )
        for i, (customer_id, event_type, data) in enumerate(events)
    ]


def refusal(report: AppendReport, conflicts: Collection[str] | None = None) -> ServiceError:
    """What a door's action the append refused comes to: FORBIDDEN for a missing
    right, NOT_FOUND for an unknown customer, CONFLICT for a rule in `conflicts`
    (None: any refusal), REJECTED otherwise; the reasons in one line."""
    errors = rejected_fields(report)
    reason = "; ".join(f"{e.field}: {e.reason}" for e in errors)
    codes = {e.code for e in errors}
    if "right_missing" in codes:
        return ServiceError(Category.FORBIDDEN, reason, errors, code="right_missing")
    if "customer_missing" in codes:
        return ServiceError(Category.NOT_FOUND, reason, errors, code="customer_missing")
    if conflicts is None or codes & set(conflicts):
        return ServiceError(Category.CONFLICT, reason, errors)
    return ServiceError(Category.REJECTED, reason, errors)


def report_json(report: AppendReport) -> dict[str, Any]:
    """`ledger append --format json`'s answer."""
    return {
        "appended": report.appended,
        "duplicates": report.duplicates,
        "rejected": [
            {
                "line": r.line,
                "event_id": r.event_id,
                "type": r.event_type,
                "errors": [{"field": e.field, "reason": e.reason} for e in r.errors],
            }
            for r in report.rejected
        ],
        "stored": report.stored,
        "first_position": report.first_position,
        "last_position": report.last_position,
    }


def keyed_event_id(namespace: uuid.UUID, user_id: str, idempotency_key: str) -> str:
    """The event id an idempotency key stands for: the acting user's key (the
    same key of another user is another request), so a retry is the same
    event id and is stored once, as any retried append is."""
    return str(uuid.uuid5(namespace, f"{user_id}\x1f{idempotency_key}"))
