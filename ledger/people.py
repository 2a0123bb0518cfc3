"""The people directory: names the CRM keeps for its users, for those who never
acted (so the ledger never saw their names) and to override what it saw.

A CSV file with an `id` and a `name` column, or a TOML file with a `[people]`
table (`.toml`):

    id,name
    u-1,Maria Keller
    integration:mailer,Mail gateway

    [people]
    u-1 = "Maria Keller"
    "integration:mailer" = "Mail gateway"

An id is `kind:id` (an actor) or a bare user id (`u-1` is `user:u-1`). Without a
file the directory is empty. Names resolve in `services.people`: the directory
first, then the latest `actor.name` the ledger has seen, then the id.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ledger.config import ConfigError

ACTOR_KINDS = ("user", "system", "api", "integration")
_MAX_NAME = 256


def person_key(ref: str) -> str:
    """`kind:id` for an actor reference, `user:ID` for a bare user id."""
    kind, sep, _ = ref.partition(":")
    return ref if sep and kind in ACTOR_KINDS else f"user:{ref}"


@dataclass(frozen=True)
class Directory:
    """Names by `kind:id`, as the people file gives them."""

    names: Mapping[str, str] = field(default_factory=dict)

    def get(self, ref: str) -> str | None:
        """The name the file gives `ref` (`kind:id` or a user id), if any."""
        return self.names.get(person_key(ref))


EMPTY = Directory()


def load_directory(path: str | Path | None) -> Directory:
    """The directory in the CSV or TOML file at `path` (EMPTY without one);
    ConfigError saying what is wrong with the file."""
    if path is None:
        return EMPTY
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"people file {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"people file {path}: not UTF-8 text") from None
    pairs = _toml(path, text) if str(path).endswith(".toml") else _csv(path, text)
    names: dict[str, str] = {}
    for ref, name in pairs:
        ref, name = ref.strip(), " ".join(name.split())
        if not ref or not name:
            continue
        if len(name) > _MAX_NAME or any(ord(ch) < 32 or ord(ch) == 127 for ch in ref + name):
            raise ConfigError(f"people file {path}: {ref[:40]!r}: name too long or not printable")
        names[person_key(ref)] = name
    return Directory(names)


def _toml(path: str | Path, text: str) -> list[tuple[str, str]]:
    import tomllib  # here: most commands run without a people file

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"people file {path}: not valid TOML: {exc}") from None
    unknown = set(raw) - {"people"}
    if unknown:
        raise ConfigError(f"people file {path}: unknown key {sorted(unknown)[0]!r}")
    people = raw.get("people", {})
    if not isinstance(people, dict) or not all(isinstance(v, str) for v in people.values()):
        raise ConfigError(f"people file {path}: [people] must map ids to names (strings)")
    return list(people.items())


def _csv(path: str | Path, text: str) -> list[tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"id", "name"} <= {f.strip() for f in reader.fieldnames}:
        raise ConfigError(f"people file {path}: needs a header line with `id` and `name`")
    pairs = []
    for row in reader:
        clean = {(k or "").strip(): v for k, v in row.items()}
        ref, name = clean.get("id"), clean.get("name")
        if isinstance(ref, str) and isinstance(name, str):
            pairs.append((ref, name))
    return pairs
