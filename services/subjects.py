"""The views of one thing on a customer's card: an order with its change history
(`order_history`), a dialogue with its messages (`dialogue`). Each is brought up
to date with every event stored before the call (read-your-writes), like a tab,
and names the people in it as the tabs do (`services.people.name_people`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.db import Connection
from ledger.people import EMPTY, Directory
from projections import chats, orders, registry
from projections.paging import DEFAULT_LIMIT, BadCursor, Page
from projections.sealing import revealing
from services.errors import Category, ServiceError, service_errors
from services.freshness import catch_up
from services.people import name_people

if TYPE_CHECKING:
    from projections.models import Dialogue, OrderHistory

__all__ = ["DEFAULT_LIMIT", "Dialogue", "OrderHistory", "dialogue", "order_history"]


def __getattr__(name: str) -> Any:
    """`Dialogue` and `OrderHistory` (the answers' models), imported when first asked for."""
    if name in ("Dialogue", "OrderHistory"):
        from projections import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _page(limit: int | None, cursor: str | None) -> Page:
    try:
        return Page(DEFAULT_LIMIT if limit is None else limit, cursor)
    except ValueError as exc:
        raise ServiceError(Category.USAGE, str(exc)) from None


def order_history(
    conn: Connection,
    customer_id: str,
    order_id: str,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    people: Directory = EMPTY,
) -> OrderHistory:
    """The customer's order as it is now and one page of its changes (field, old,
    new, who, when), newest first. NOT_FOUND when the customer has no such order."""
    from projections.models import OrderHistory

    page = _page(limit, cursor)
    with service_errors():
        catch_up(conn, [registry.get("orders"), registry.get("people")])
        try:
            found = orders.order_history(revealing(conn), customer_id, order_id, page)
        except BadCursor as exc:
            raise ServiceError(Category.USAGE, str(exc)) from None
    if found is None:
        raise ServiceError(
            Category.NOT_FOUND, f"customer {customer_id!r} has no order {order_id!r}"
        )
    # The order's last change, and each change, by name: one look-up for all.
    name_people(conn, [found, *found["items"]], people, actors=("changed_by", "actor"))
    return OrderHistory.model_validate(found)


def dialogue(
    conn: Connection,
    customer_id: str,
    dialog_id: str,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    people: Directory = EMPTY,
) -> Dialogue:
    """The customer's dialogue (channel, status, start, message count, the
    producer's url) and one page of its messages in the order they were sent;
    erased texts read as erased. NOT_FOUND when the customer has no such dialogue."""
    from projections.models import Dialogue

    page = _page(limit, cursor)
    with service_errors():
        catch_up(conn, [registry.get("chats"), registry.get("people")])
        try:
            found = chats.dialogue(revealing(conn), customer_id, dialog_id, page)
        except BadCursor as exc:
            raise ServiceError(Category.USAGE, str(exc)) from None
    if found is None:
        raise ServiceError(
            Category.NOT_FOUND, f"customer {customer_id!r} has no dialogue {dialog_id!r}"
        )
    name_people(conn, found["items"], people, actors=("author",))
    return Dialogue.model_validate(found)
