"""People: the latest `actor.name` the ledger has seen for each `kind:id`.

Not a tab: the tabs show people by name through `services.people`, which asks
this read model (after the people directory, which wins) for the ids a page of
a tab names. Actors are the ledger's users and integrations, not customers:
their names are not personal values of a customer and are kept in plain text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from projections.base import Envelope, EveryEventType, Projection, Tables, Writer
from projections.tables import TableSpec

PEOPLE = TableSpec(
    name="rm_people",
    columns=(("person", "text"), ("name", "text"), ("position", "int")),
    key=("person",),
)

# Keeps IN lists well under both stores' parameter limits.
_KEYS_PER_SELECT = 500


class _PeopleWriter(Writer):
    def __init__(self, db: Connection, tables: Tables) -> None:
        self._db = db
        self._table = tables[PEOPLE.name]
        self._latest: dict[str, tuple[str, int]] = {}  # person -> (name, position)

    def add(self, events: Sequence[Envelope]) -> None:
        latest = self._latest
        for e in events:
            actor = e.actor
            name = actor.get("name")
            if name:
                latest[f"{actor['kind']}:{actor['id']}"] = (name, e.position)

    def flush(self) -> None:
        latest, self._latest = self._latest, {}
        if not latest:
            return
        # A later position wins, so a batch applied twice changes nothing.
        self._db.executemany(
            f"INSERT INTO {self._table} (person, name, position) VALUES (?, ?, ?) "
            "ON CONFLICT (person) DO UPDATE SET name = excluded.name, "
            f"position = excluded.position WHERE {self._table}.position < excluded.position",
            [(person, name, position) for person, (name, position) in latest.items()],
        )


class PeopleProjection(Projection):
    """The people read model: each actor's latest name (`kind:id` -> name)."""

    name = "people"
    tab = False
    tables = (PEOPLE,)
    types = EveryEventType()

    def writer(self, db: Connection, tables: Tables, keys: Ciphers) -> Writer:
        return _PeopleWriter(db, tables)


def latest_names(conn: Connection, people: Iterable[str]) -> dict[str, str]:
    """The latest name seen for each of `people` (`kind:id`) that has one."""
    wanted = sorted(set(people))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _KEYS_PER_SELECT):
        chunk = wanted[start : start + _KEYS_PER_SELECT]
        marks = ", ".join("?" * len(chunk))
        for person, name in conn.fetchall(
            f"SELECT person, name FROM {PEOPLE.name} WHERE person IN ({marks})", chunk
        ):
            found[str(person)] = str(name)
    return found
