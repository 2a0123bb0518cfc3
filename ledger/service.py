"""The service layer: what `cli/` and `api/` both call, so neither holds logic.

`Services` is the composition root (the configured store, application and
rights policy). The functions below are the operations: make a store ready,
read a tab up to date, migrate, append, act on a task. Every failure a caller
should see is a `ServiceError` with a `Category`; the CLI maps categories to
exit codes (`cli/context.py`) and the API to HTTP statuses (`api/problems.py`),
each in one table. Messages name what is wrong, never a CLI flag or an HTTP
parameter, because both kinds of caller read them.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ledger.config import (
    DATABASE_URL_ENV,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LOCK_TIMEOUT,
    RIGHTS_POLICY_ENV,
    ConfigError,
    DatabaseURL,
    auto_migrate,
    database_url,
)
from ledger.db import Connection, DatabaseUnavailable, is_pool_exhausted, is_unavailable
from ledger.input import InputError, InputItem
from ledger.keystore import KeystoreError
from ledger.lookups import states_by_event_id
from ledger.personal import TamperedValue
from ledger.printable import first_line
from ledger.reading import events_table_exists, head_position
from ledger.rights import ALLOW_ALL, RightsPolicy, load_policy
from ledger.times import BadTime, parse_user_time
from projections import registry, tracking
from projections.base import Projection
from projections.card import card_value
from projections.paging import DEFAULT_LIMIT as PAGE_LIMIT
from projections.paging import Page
from projections.schema import SchemaMissing, ensure_schema, require_schema, schema_ready
from projections.sealing import revealing
from projections.tabs import (
    TABS,
    TabRequest,
    check_cursor,
    customer_exists,
    read_tab,
    tab_counts,
)
from projections.tasks import task_item
from projections.timeline import DEFAULT_LIMIT, TimelineQuery

# A tab read imports none of these (tests/test_startup.py): the append engine and the
# eventsourcing library, psycopg (longer to import than a whole tab read on SQLite),
# the projection runner, the audit trail and the tabs' pydantic models are imported
# where they are used.
if TYPE_CHECKING:
    from ledger.appending import Appender, AppendReport
    from ledger.application import LedgerApplication
    from projections.models import LastEmail, TabAnswer, TaskItem


class Category(StrEnum):
    REJECTED = "rejected"  # the input breaks a contract or a rule
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"  # the rights policy refuses the acting user
    CONFLICT = "conflict"  # the subject's current state forbids the action
    UNAVAILABLE = "unavailable"  # the database cannot be reached
    USAGE = "usage"  # a bad parameter or configuration


@dataclass(frozen=True)
class RejectedField:
    """One reason one event was rejected; `index` is its 0-based place in the input."""

    index: int
    event_id: str | None
    type: str | None
    field: str
    reason: str


class ServiceError(Exception):
    def __init__(
        self, category: Category, message: str, errors: Iterable[RejectedField] = ()
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.errors = list(errors)


MISSING_TABLES = (
    "the ledger's tables are missing; run `ledger db migrate` "
    "(LEDGER_AUTO_MIGRATE=0 stops commands from creating them)"
)


def classify(exc: BaseException) -> ServiceError | None:
    """The category of an exception from anywhere below the service layer, or
    None for a bug (which callers report as an internal error)."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, SchemaMissing | ConfigError | registry.UnknownProjection):
        return ServiceError(Category.USAGE, str(exc))
    if isinstance(exc, _loaded("projections.runner", "ProjectionError")):
        return ServiceError(Category.REJECTED, str(exc))
    if isinstance(exc, KeystoreError):
        return ServiceError(Category.USAGE, str(exc))
    if isinstance(exc, TamperedValue):
        return ServiceError(Category.REJECTED, str(exc))
    if _is_missing_table(exc):
        return ServiceError(Category.USAGE, f"{first_line(exc)}: {MISSING_TABLES}")
    if _mentions(exc, "readonly database"):
        return ServiceError(
            Category.USAGE,
            f"the database is read-only: the file of the store ({DATABASE_URL_ENV}) "
            "and its directory must be writable",
        )
    if _mentions(exc, "database is locked"):
        return ServiceError(
            Category.UNAVAILABLE,
            "the database is locked: another writer held it longer than this command "
            "waits (raise it with sqlite:///PATH?lock_timeout=SECONDS; default "
            f"{DEFAULT_LOCK_TIMEOUT})",
        )
    if _mentions(exc, "idle-in-transaction timeout"):
        return ServiceError(
            Category.UNAVAILABLE,
            "the import waited for input longer than PostgreSQL lets a transaction sit "
            "idle, and the server ended it; nothing stored (feed the input faster, skip "
            "invalid events for a transaction per batch, or raise ?idle_timeout=SECONDS "
            f"in the URL; default {DEFAULT_IDLE_TIMEOUT})",
        )
    if _is_refused_value(exc):
        # e.g. a NUL character, which PostgreSQL text cannot hold; the
        # transaction rolled back, so nothing was stored.
        return ServiceError(
            Category.REJECTED, f"the database refused a value: {first_line(exc)}; nothing stored"
        )
    if isinstance(exc, DatabaseUnavailable):
        return ServiceError(Category.UNAVAILABLE, str(exc))
    if is_pool_exhausted(exc):
        return ServiceError(
            Category.UNAVAILABLE,
            "no database connection came free in time (every one is busy, or the "
            "database does not answer); retry later",
        )
    if is_unavailable(exc):
        return ServiceError(Category.UNAVAILABLE, f"database unavailable: {first_line(exc)}")
    return None


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes `names` of `module` if it was imported, else none: an
    exception of a class never imported cannot have been raised, so classifying
    one imports nothing (psycopg or the runner, on a tab read that needs neither)."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found is not None else ()


def _is_refused_value(exc: BaseException) -> bool:
    refused = (
        *_loaded("psycopg", "DataError"),
        *_loaded("eventsourcing.persistence", "DataError"),
    )
    return any(isinstance(e, refused) for e in (exc, exc.__cause__))


def _mentions(exc: BaseException, text: str) -> bool:
    """A store error (or its cause) whose message says `text` (the driver's wording)."""
    return any(e is not None and text in str(e) for e in (exc, exc.__cause__))


def _is_missing_table(exc: BaseException) -> bool:
    """A table that `ledger db migrate` would have created, on either store."""
    undefined_table = _loaded("psycopg.errors", "UndefinedTable")
    persistence_error = _loaded("eventsourcing.persistence", "PersistenceError")
    for e in (exc, exc.__cause__):
        if isinstance(e, undefined_table):
            return True
        if isinstance(e, sqlite3.OperationalError) and "no such table" in str(e):
            return True
        if isinstance(e, persistence_error) and (
            ("does not exist" in str(e) and "relation" in str(e)) or "no such table" in str(e)
        ):
            return True
    return False


@contextmanager
def service_errors() -> Iterator[None]:
    """Known failures from below become ServiceErrors; bugs pass through."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as exc:
        known = classify(exc)
        if known is None:
            raise
        raise known from exc


@dataclass
class Services:
    """The composition root: one configured store and rights policy.

    `db_option` / `rights_option` are what the caller was given (a command-line
    option or a server setting); unset, the environment and defaults apply."""

    db_option: str | None = None
    rights_option: str | None = None
    _app: LedgerApplication | None = field(default=None, repr=False)
    _policy: RightsPolicy | None = field(default=None, repr=False)

    @property
    def url(self) -> DatabaseURL:
        try:
            return database_url(self.db_option)
        except ConfigError as exc:
            raise ServiceError(Category.USAGE, str(exc)) from exc

    def app(self) -> LedgerApplication:
        if self._app is None:
            from ledger.application import LedgerApplication

            with service_errors():
                self._app = LedgerApplication(self.url)
        return self._app

    def connect(self) -> Connection:
        with service_errors():
            return Connection(self.url)

    def policy(self) -> RightsPolicy:
        if self._policy is None:
            path = self.rights_option or os.environ.get(RIGHTS_POLICY_ENV) or None
            try:
                self._policy = load_policy(path)
            except ConfigError as exc:
                raise ServiceError(Category.USAGE, str(exc)) from exc
        return self._policy

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


# -- schema ---------------------------------------------------------------------------


def prepare_store(conn: Connection) -> None:
    """Events table and read-model tables in place, created on first use
    unless LEDGER_AUTO_MIGRATE=0."""
    with service_errors():
        if not events_table_exists(conn):
            if not auto_migrate():
                raise SchemaMissing(MISSING_TABLES)
            from ledger.application import LedgerApplication

            LedgerApplication(conn.url, create_tables=True).close()
        require_schema(conn, auto_migrate())


def store_ready(conn: Connection) -> bool:
    """The events table and every read model's tables are in place."""
    with service_errors():
        return events_table_exists(conn) and schema_ready(conn)


def migrate(url: DatabaseURL) -> None:
    """Create every table the ledger needs; idempotent and safe to run concurrently."""
    # Imported here: the relay package is not needed by a reader of tabs.
    from ledger.application import LedgerApplication
    from relay.tracking import ensure_schema as ensure_relay_schema

    with service_errors():
        LedgerApplication(url, create_tables=True).close()
        with Connection(url) as conn:
            ensure_schema(conn)
            ensure_relay_schema(conn)


# -- reading --------------------------------------------------------------------------


# The tab parameters' names as a caller spells them (CLI options or query parameters).
TAB_PARAMETERS = ("kind", "since", "until", "limit", "cursor", "as")


def tab_request(
    customer_id: str,
    tab: str,
    *,
    kinds: Sequence[str] = (),
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    viewer: str | None = None,
    policy: RightsPolicy = ALLOW_ALL,
    names: Mapping[str, str] | None = None,
) -> TabRequest:
    """Check a tab's parameters and build its request. `names` maps each of
    TAB_PARAMETERS to the caller's spelling, for the messages."""

    def name(parameter: str) -> str:
        return (names or {}).get(parameter, parameter)

    if tab not in TABS:
        raise ServiceError(Category.USAGE, f"unknown tab {tab!r} (tabs: {', '.join(TABS)})")
    timeline_only = {
        "kind": bool(kinds),
        "since": since is not None,
        "until": until is not None,
    }
    if tab != "timeline":
        for parameter, given in timeline_only.items():
            if given:
                raise ServiceError(
                    Category.USAGE, f"{name(parameter)} applies to the timeline tab only"
                )
    if viewer is not None and tab != "tasks":
        raise ServiceError(Category.USAGE, f"{name('as')} applies to the tasks tab only")

    def moment(parameter: str, text: str | None) -> datetime | None:
        if text is None:
            return None
        try:
            return parse_user_time(text)
        except BadTime as exc:
            raise ServiceError(Category.USAGE, f"{name(parameter)}: {exc}") from None

    try:
        request = TabRequest(
            customer_id=customer_id,
            tab=tab,
            timeline=TimelineQuery(
                kinds=tuple(dict.fromkeys(kinds)),
                since=moment("since", since),
                until=moment("until", until),
                limit=limit if limit is not None else DEFAULT_LIMIT,
                cursor=cursor,
            )
            if tab == "timeline"
            else TimelineQuery(),
            viewer=viewer,
            policy=policy if viewer is not None else ALLOW_ALL,
            page=Page(limit if limit is not None else PAGE_LIMIT, cursor)
            if tab != "timeline"
            else Page(),
        )
        if cursor is not None:
            check_cursor(tab, customer_id, cursor)
    except ValueError as exc:  # BadCursor included
        raise ServiceError(Category.USAGE, str(exc)) from None
    return request


def tab_answer(conn: Connection, request: TabRequest) -> TabAnswer:
    """One tab, brought up to date with every event stored before the call."""
    from projections.models import answer

    return answer(tab_rows(conn, request))


def tab_rows(conn: Connection, request: TabRequest) -> dict[str, Any]:
    """`tab_answer` as the plain JSON value its model dumps to (the tests hold the
    two equal for every tab): `ledger tab` prints it without building the model's
    validator, which costs more than the read itself."""
    with service_errors():
        catch_up(conn, [registry.get(request.tab)])
        return read_tab(conn, request)


def catch_up(conn: Connection, projections: Sequence[Projection]) -> None:
    """Read-your-writes: bring live read models up to the head as it is now.

    Most reads find them current already; that is checked here with two small
    queries, so only a read that has events to apply imports the runner (and,
    with it, psycopg and the event contracts' validators). Anything unusual (no
    tracking row, another layout version, a stopped projection) is the runner's
    to report or handle."""
    found = tracking.read(conn, [p.name for p in projections])
    head = head_position(conn)
    current = all(
        (row := found.get(p.name)) is not None
        and row.version == p.version
        and row.stopped is None
        and row.position >= head
        for p in projections
    )
    if not current:
        from projections.runner import catch_up_live

        catch_up_live(conn, projections)


def projections_status(conn: Connection) -> dict[str, Any]:
    """`ledger projections status --format json`'s answer."""
    from projections.status import projection_status

    with service_errors():
        head, rows = projection_status(conn, registry.select(()))
    return {"head": head, "projections": [r.as_json() for r in rows]}


@dataclass(frozen=True)
class CardHeader:
    """What a customer card shows above its tabs."""

    name: str | None  # the card's current name
    last_email: LastEmail | None  # the newest email sent, and whether it was opened
    counts: dict[str, int]  # items per tab (the timeline's: every event), up to count_cap
    count_cap: int  # a count of count_cap + 1 means "more than count_cap"


# The tab badges show up to this many items, then "1,000+": counting costs a
# walk of the index per tab, and at 10,000 those walks were most of the page's
# time for a busy customer (bench.page).
CARD_COUNT_CAP = 1_000


def card_header(conn: Connection, customer_id: str, count_cap: int = CARD_COUNT_CAP) -> CardHeader:
    """The card's header, every read model brought up to date first. Capped
    counts and the newest rows only, so a customer with 100,000 events costs
    about what a small one does."""
    from projections.models import EmailsTab, answer

    with service_errors():
        catch_up(conn, [registry.get(name) for name in registry.NAMES])
        counts = tab_counts(conn, customer_id, count_cap)
        name = card_value(conn, customer_id, "name")
        emails = answer(read_tab(conn, TabRequest(customer_id, "emails", page=Page(limit=1))))
    assert isinstance(emails, EmailsTab)
    return CardHeader(
        name if isinstance(name, str) else None, emails.last_email, counts, count_cap
    )


@dataclass(frozen=True)
class CustomerMatch:
    """A customer the customer search found."""

    customer_id: str
    name: str | None  # the card's current name


# What can be a customer id at all: the event contracts' bounds, and no control
# characters (the HTTP API's rule for ids; a NUL would reach the database).
_SEARCHABLE_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


def find_customers(conn: Connection, query: str) -> tuple[CustomerMatch, ...]:
    """The customers a search for `query` finds: for now the one whose id it is
    exactly (spaces around it ignored), if any event of theirs is stored. The
    customer page only calls this, so searching by phone, e-mail or name is a
    change here, not in the page."""
    text = query.strip()
    if not _SEARCHABLE_ID.fullmatch(text):
        return ()
    with service_errors():
        catch_up(conn, [registry.get("timeline"), registry.get("card")])
        if not customer_exists(conn, text):
            return ()
        name = card_value(conn, text, "name")
    return (CustomerMatch(text, name if isinstance(name, str) else None),)


# -- appending ------------------------------------------------------------------------


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
    from ledger.appending import DEFAULT_BATCH_SIZE, Appender

    size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    with service_errors(), Appender(app, policy, batch_size=size) as appender:
        return append_with(appender, items, skip_invalid=skip_invalid)


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
        _observe(None, time.perf_counter() - started)
        raise ServiceError(Category.REJECTED, f"input: {exc}; nothing stored") from exc
    except UnicodeDecodeError as exc:
        _observe(None, time.perf_counter() - started)
        raise ServiceError(
            Category.REJECTED, f"input is not UTF-8 text: {exc.reason}; nothing stored"
        ) from exc
    _observe(report, time.perf_counter() - started)
    return report


# Called after each append with its report (None: the input was unreadable) and
# its duration. `ledger.metrics` adds itself when a process exposes metrics;
# other processes (a CLI command) do not pay for importing prometheus-client.
APPEND_OBSERVERS: list[Callable[[AppendReport | None, float], None]] = []


def _observe(report: AppendReport | None, seconds: float) -> None:
    for observer in APPEND_OBSERVERS:
        observer(report, seconds)


def rejected_fields(report: AppendReport, *, first_line_number: int = 0) -> list[RejectedField]:
    """Each reason of each rejection, flat; an item's `line` minus
    `first_line_number` is its index (the API numbers its items from 0)."""
    return [
        RejectedField(r.line - first_line_number, r.event_id, r.event_type, e.field, e.reason)
        for r in report.rejected
        for e in r.errors
    ]


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


# -- task actions ---------------------------------------------------------------------

TASK_ACTIONS = ("complete", "reopen", "delete", "edit")
_ACTION_TYPES = {
    "complete": "task.completed",
    "reopen": "task.reopened",
    "delete": "task.deleted",
    "edit": "task.edited",
}
# An idempotency key becomes an event id in this namespace, so a retried action
# is stored at most once, by the same unique event id as any retried append.
_IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://interaction-ledger/task-action")


@dataclass(frozen=True)
class FieldChange:
    field: str
    new: Any


@dataclass(frozen=True)
class TaskActionRequest:
    customer_id: str
    task_id: str
    action: str
    user_id: str  # the acting user, the event's actor
    changes: tuple[FieldChange, ...] = ()
    idempotency_key: str | None = None
    source: str = "ledger"


@dataclass(frozen=True)
class TaskActionResult:
    task: TaskItem | None  # None once deleted
    stored: bool  # False when the idempotency key had already stored it


def task_action(
    app: LedgerApplication, conn: Connection, policy: RightsPolicy, request: TaskActionRequest
) -> TaskActionResult:
    """Build the action's event from the task's current state, let the domain
    check it (status and rights) exactly as an appended event, store it, and
    answer the task as its tab now shows it to the acting user.

    With an idempotency key every request gets the answer of the one event the
    key stored: the task as that event left it, whether the request stored it,
    raced the one that did, or came later (even after further actions). The key
    reused for another action, task or changes is refused (REJECTED)."""
    if request.action not in _ACTION_TYPES:
        raise ServiceError(
            Category.USAGE,
            f"unknown task action {request.action!r} (actions: {', '.join(TASK_ACTIONS)})",
        )
    if request.action == "edit" and not request.changes:
        raise ServiceError(Category.USAGE, "edit needs at least one change")
    if request.action != "edit" and request.changes:
        raise ServiceError(Category.USAGE, f"{request.action} takes no changes")
    if request.idempotency_key is None:
        _store_action(app, conn, policy, request, str(uuid.uuid4()))
        return TaskActionResult(task=_task_item(conn, policy, request), stored=True)
    event_id = _event_id(request.user_id, request.idempotency_key)
    earlier = _keyed_answer(conn, policy, request, event_id)
    if earlier is not None:
        return earlier
    try:
        stored = _store_action(app, conn, policy, request, event_id)
    except ServiceError as refused:
        if refused.category in (Category.UNAVAILABLE, Category.USAGE):
            raise
        # A request with the same key may have stored its event since we looked
        # (the store refuses ours as a different event under its id, or the
        # task is already deleted or completed by it): answer as that one did.
        earlier = _keyed_answer(conn, policy, request, event_id)
        if earlier is None:
            raise
        return earlier
    answer = _keyed_answer(conn, policy, request, event_id)
    if answer is None:  # stored, then gone: cannot happen to an append-only table
        raise ServiceError(Category.CONFLICT, f"the stored event {event_id} is not found")
    return replace(answer, stored=stored)


def _store_action(
    app: LedgerApplication,
    conn: Connection,
    policy: RightsPolicy,
    request: TaskActionRequest,
    event_id: str,
) -> bool:
    """Append the action's event under `event_id`; False if an identical event
    was stored already. A refusal is a ServiceError in the caller's terms."""
    with service_errors():
        customer = app.customer(request.customer_id)
        if not customer.exists:
            raise ServiceError(
                Category.NOT_FOUND, f"customer {request.customer_id!r} does not exist"
            )
        if customer.tasks.get(request.task_id, "deleted") == "deleted":
            raise ServiceError(
                Category.NOT_FOUND,
                f"task {request.task_id!r} does not exist for customer {request.customer_id!r}",
            )
        data: dict[str, Any] = {"task_id": request.task_id}
        if request.action == "edit":
            current = _task_fields(conn, request.task_id)
            data["changes"] = [
                {"field": c.field, "old": current.get(c.field), "new": c.new}
                for c in request.changes
            ]
        event = {
            "event_id": event_id,
            "type": _ACTION_TYPES[request.action],
            "customer_id": request.customer_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "actor": {"kind": "user", "id": request.user_id},
            "source": request.source,
            "data": data,
        }
        report = append_items(app, policy, [InputItem(0, json.dumps(event, ensure_ascii=False))])
    if report.rejected:
        raise _action_refused(app, request, report)
    return report.appended == 1


def _keyed_answer(
    conn: Connection, policy: RightsPolicy, request: TaskActionRequest, event_id: str
) -> TaskActionResult | None:
    """The answer to `request` from the event its key stored (`stored` False):
    the task as that event left it, as the acting user sees it. None if the key
    stored nothing; REJECTED if it stored another action than `request` asks for."""
    from ledger.audit.history import Selector, iter_history
    from projections.base import Envelope
    from projections.models import TaskItem
    from projections.tasks import task_as_of

    with service_errors():
        state = states_by_event_id(conn, [event_id]).get(event_id)
        if state is None:
            return None
        # Which action and task: none of these is a personal value, so the
        # stored JSON says them without the keys.
        stored = json.loads(state)
        data = stored.get("data") if isinstance(stored.get("data"), dict) else {}
        did = _KeyedAction(
            str(stored.get("type")), str(stored.get("customer_id")), str(data.get("task_id"))
        )
        if did != _KeyedAction(
            _ACTION_TYPES[request.action], request.customer_id, request.task_id
        ):
            raise _key_reused(request, event_id, did)
        events: list[Envelope] = []
        found = False
        for e in iter_history(conn, Selector("task", did.task_id)):
            if e.occurred_at is None or not isinstance(e.data, dict):
                continue  # unreadable (`ledger audit verify` reports it): not the task's
            document = {
                "event_id": e.event_id,
                "customer_id": e.customer_id,
                "occurred_at": e.occurred_at,
                "actor": {},
                "data": e.data,
            }
            events.append(Envelope.of(e.position, e.type, document))
            if e.event_id == event_id:
                found = True
                break
        if not found:  # its subject column does not name its task: answer nothing
            return None
        if request.action == "edit" and _changes_of(events[-1].data) != _changes_of(
            {"changes": [{"field": c.field, "new": c.new} for c in request.changes]}
        ):
            raise _key_reused(request, event_id, did, other_changes=True)
        item = task_as_of(events, request.user_id, policy)
    return TaskActionResult(None if item is None else TaskItem.model_validate(item), False)


@dataclass(frozen=True)
class _KeyedAction:
    type: str
    customer_id: str
    task_id: str


def _changes_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    """An edit's changes as what a request names: each field and its new value
    (as JSON text, so that values compare as the JSON they were sent as)."""
    return [
        (str(c.get("field")), json.dumps(c.get("new"), sort_keys=True))
        for c in data.get("changes", [])
        if isinstance(c, dict)
    ]


def _key_reused(
    request: TaskActionRequest, event_id: str, did: _KeyedAction, *, other_changes: bool = False
) -> ServiceError:
    action = next((a for a, t in _ACTION_TYPES.items() if t == did.type), did.type)
    what = f"{action} of task {did.task_id!r} of customer {did.customer_id!r}"
    asked = (
        "other changes"
        if other_changes
        else f"{request.action} of task {request.task_id!r} of customer {request.customer_id!r}"
    )
    reason = (
        f"this idempotency key of user {request.user_id!r} was used for {what}, not for "
        f"{asked}; a retry must repeat the same request, a new action needs a new key"
    )
    return ServiceError(
        Category.REJECTED,
        reason,
        [RejectedField(0, event_id, _ACTION_TYPES[request.action], "idempotency_key", reason)],
    )


def _task_item(
    conn: Connection, policy: RightsPolicy, request: TaskActionRequest
) -> TaskItem | None:
    """The task as the acting user's tasks tab shows it now; None once deleted."""
    from projections.models import TaskItem

    with service_errors():
        catch_up(conn, [registry.get("tasks")])
        item = task_item(
            revealing(conn), request.customer_id, request.task_id, request.user_id, policy
        )
    return None if item is None else TaskItem.model_validate(item)


def _event_id(user_id: str, idempotency_key: str) -> str:
    # The key is the acting user's: the same key of another user is another
    # action. The action and its task are not part of the id, so the key reused
    # for another one finds the event it stored and is refused, not stored again.
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{user_id}\x1f{idempotency_key}"))


def _action_refused(
    app: LedgerApplication, request: TaskActionRequest, report: AppendReport
) -> ServiceError:
    """The domain refused the event: say why in the caller's terms."""
    errors = rejected_fields(report)
    reason = "; ".join(f"{e.field}: {e.reason}" for e in errors)
    if any(e.field == "actor.id" for e in errors):
        return ServiceError(Category.FORBIDDEN, reason, errors)
    if any(e.field.startswith("data.changes") for e in errors):
        return ServiceError(Category.REJECTED, reason, errors)
    # A concurrent action may have deleted it since we looked.
    if app.customer(request.customer_id).tasks.get(request.task_id, "deleted") == "deleted":
        return ServiceError(Category.NOT_FOUND, reason, errors)
    return ServiceError(Category.CONFLICT, reason, errors)


def _task_fields(conn: Connection, task_id: str) -> dict[str, Any]:
    """A task's current fields, folded from its events (the `old` of an edit)."""
    from ledger.audit.history import Selector, iter_history

    fields: dict[str, Any] = {}
    for event in iter_history(conn, Selector("task", task_id)):
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "task.created":
            fields.update({k: v for k, v in data.items() if k != "task_id"})
        elif event.type == "task.edited":
            for change in data.get("changes", []):
                fields[change["field"]] = change["new"]
    return fields
