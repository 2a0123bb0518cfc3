"""Every read model, by name. A tab of `ledger tab` reads the projection of the same name."""

from __future__ import annotations

from collections.abc import Iterable

from projections.base import Projection
from projections.card import CardProjection
from projections.chats import ChatsProjection
from projections.duplicates import DuplicatesProjection
from projections.emails import EmailsProjection
from projections.merges import MergesProjection
from projections.orders import OrdersProjection
from projections.people import PeopleProjection
from projections.search import SearchProjection
from projections.segments import SegmentsProjection
from projections.tasks import TasksProjection
from projections.timeline import TimelineProjection
from projections.visits import VisitsProjection

PROJECTIONS: tuple[Projection, ...] = (
    TimelineProjection(),
    TasksProjection(),
    VisitsProjection(),
    SegmentsProjection(),
    ChatsProjection(),
    EmailsProjection(),
    OrdersProjection(),
    CardProjection(),
    SearchProjection(),
    DuplicatesProjection(),
    MergesProjection(),
    PeopleProjection(),
)
NAMES: tuple[str, ...] = tuple(p.name for p in PROJECTIONS)
# The card's tabs: each reads the projection of its name.
TAB_NAMES: tuple[str, ...] = tuple(p.name for p in PROJECTIONS if p.tab)
_BY_NAME = {p.name: p for p in PROJECTIONS}


class UnknownProjection(KeyError):
    """No projection has this name; the message lists the known ones."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown projection {self.name!r} (known: {', '.join(NAMES)})"


def get(name: str) -> Projection:
    """The projection called `name`, or UnknownProjection."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownProjection(name) from None


def select(names: Iterable[str]) -> list[Projection]:
    """The named projections in registry order; all of them when `names` is empty."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return list(PROJECTIONS)
    chosen = {get(n).name for n in wanted}
    return [p for p in PROJECTIONS if p.name in chosen]
