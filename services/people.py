"""People by name: the one rule every door shows a person by.

A person is `kind:id` (an actor) or a user id (an assignee, `user:ID`). Their
name is the people directory's (the CRM's file, `ledger.people`), else the
latest `actor.name` the ledger has seen (`projections.people`), else unknown:
the JSON answers then carry null, and what a person reads shows the id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ledger.db import Connection
from ledger.people import EMPTY, Directory, person_key
from ledger.summaries import customers_in, name_customers_in, name_people_in, people_in
from projections import registry
from projections.card import card_text
from projections.people import latest_names
from services.errors import service_errors

__all__ = ["EMPTY", "Directory", "display_name", "name_people", "names_of"]


def names_of(
    conn: Connection, refs: Iterable[str], directory: Directory = EMPTY
) -> dict[str, str | None]:
    """Each of `refs` (`kind:id` or a user id) -> its name, None when no one knows
    it. Reads the people read model as it is (callers catch it up)."""
    refs = list(dict.fromkeys(refs))
    keys = {ref: person_key(ref) for ref in refs}
    unknown = [k for k in keys.values() if directory.names.get(k) is None]
    with service_errors():
        seen = latest_names(conn, unknown) if unknown else {}
    return {ref: directory.names.get(key) or seen.get(key) for ref, key in keys.items()}


def display_name(conn: Connection, ref: str, directory: Directory = EMPTY) -> str:
    """The name to show for `ref` (`kind:id` or a user id), the id as a fallback;
    the people read model is caught up first."""
    from services.freshness import catch_up

    with service_errors():
        catch_up(conn, [registry.get("people")])
    return names_of(conn, [ref], directory)[ref] or ref


def _actor_key(actor: Any) -> str | None:
    if not isinstance(actor, dict) or not actor.get("kind") or not actor.get("id"):
        return None
    return f"{actor['kind']}:{actor['id']}"


def _name_customers(conn: Connection, items: list[dict[str, Any]]) -> None:
    refs = {
        c
        for item in items
        if isinstance(summary := item.get("summary"), str)
        for c in customers_in(summary)
    }
    if not refs:
        return
    names = {c: card_text(conn, c, "name") for c in refs}
    for item in items:
        summary = item.get("summary")
        if isinstance(summary, str):
            item["summary"] = name_customers_in(summary, names)


def name_people(
    conn: Connection,
    items: list[dict[str, Any]],
    directory: Directory = EMPTY,
    *,
    actors: tuple[str, ...] = ("actor",),
) -> None:
    """Give the people that tab items name their names, in place: an item's
    `actor.name` (kept when no one knows a better one; `actors` names the
    members that hold people, a message's `author` say), beside an `assignee_id` an
    `assignee_name` (None when unknown), and the people a timeline `summary`
    holds (by name, else by id), and the customers it holds (a merge's) by
    their card's name."""
    _name_customers(conn, items)
    refs: list[str] = []
    for item in items:
        summary = item.get("summary")
        if isinstance(summary, str):
            refs += people_in(summary)
        refs += [k for a in actors if (k := _actor_key(item.get(a))) is not None]
        assignee = item.get("assignee_id")
        if isinstance(assignee, str):
            refs.append(assignee)
    if not refs:
        for item in items:
            if "assignee_id" in item:
                item["assignee_name"] = None
        return
    names = names_of(conn, refs, directory)
    for item in items:
        summary = item.get("summary")
        if isinstance(summary, str):
            item["summary"] = name_people_in(summary, names)
        for actor in actors:
            key = _actor_key(item.get(actor))
            if key is not None:
                person = item[actor]
                item[actor] = {**person, "name": names[key] or person.get("name")}
        if "assignee_id" in item:
            assignee = item["assignee_id"]
            item["assignee_name"] = names[assignee] if isinstance(assignee, str) else None
