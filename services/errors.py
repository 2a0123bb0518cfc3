"""The service layer's errors: every failure a caller should see is a
`ServiceError` with a `Category`. The CLI maps categories to exit codes
(`cli/context.py`) and the API to HTTP statuses (`api/problems.py`), each in one
table. Messages name what is wrong, never a CLI flag or an HTTP parameter,
because both kinds of caller read them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ledger.config import ConfigError
from ledger.errors import (
    DatabaseLocked,
    DatabaseUnavailable,
    IdleTransactionEnded,
    PoolExhausted,
    StoreError,
    StoreMoved,
    StoreReadOnly,
    TablesMissing,
    ValueRefused,
    loaded,
    store_error,
)
from ledger.keystore.errors import KeystoreError
from ledger.personal import TamperedValue
from projections import registry
from projections.schema import SchemaMissing


class Category(StrEnum):
    """What kind of failure a ServiceError is; each door maps it to its own answer
    (an exit code, an HTTP status) in one table."""

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
    code: str | None = None  # the rule's stable name (ledger.domain), when a rule refused it


class ServiceError(Exception):
    """A failure a caller should see: its category, a message for a person, and
    for rejected events each field at fault. `code` names the rule or the
    missing thing for machines and for doors that say it in their own words
    (the first error's code unless given)."""

    def __init__(
        self,
        category: Category,
        message: str,
        errors: Iterable[RejectedField] = (),
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.errors = list(errors)
        self.code = code or next((e.code for e in self.errors if e.code), None)

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable, so a worker process can hand it back whole (Exception's own
        # pickling passes only the message to __init__).
        return (_service_error, (self.category, self.message, self.errors, self.code))

    @property
    def field(self) -> str | None:
        """The field at fault: the first error's with the rule's code, if any."""
        for e in self.errors:
            if self.code is None or e.code == self.code:
                return e.field
        return None


def _service_error(
    category: Category, message: str, errors: list[RejectedField], code: str | None
) -> ServiceError:
    return ServiceError(category, message, errors, code=code)


# Each kind of store error is one category: the adapters (ledger.errors) say what
# happened, by the error's class and code, and this table what it means to a caller.
STORE_CATEGORIES: dict[type[StoreError], Category] = {
    DatabaseUnavailable: Category.UNAVAILABLE,
    PoolExhausted: Category.UNAVAILABLE,
    DatabaseLocked: Category.UNAVAILABLE,
    IdleTransactionEnded: Category.UNAVAILABLE,
    StoreMoved: Category.UNAVAILABLE,
    StoreReadOnly: Category.USAGE,
    TablesMissing: Category.USAGE,
    ValueRefused: Category.REJECTED,
}


def classify(exc: BaseException) -> ServiceError | None:
    """The category of an exception from anywhere below the service layer, or
    None for a bug (which callers report as an internal error)."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, SchemaMissing | ConfigError | registry.UnknownProjection):
        return ServiceError(Category.USAGE, str(exc))
    if isinstance(exc, loaded("projections.targets", "ProjectionError")):
        return ServiceError(Category.REJECTED, str(exc))
    if isinstance(exc, KeystoreError):
        return ServiceError(Category.USAGE, str(exc))
    if isinstance(exc, TamperedValue):
        return ServiceError(Category.REJECTED, str(exc))
    kind = store_error(exc)
    if kind is None:
        return None
    return ServiceError(STORE_CATEGORIES[type(kind)], str(kind))


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
