"""The rights policy: which users may edit, reopen or delete tasks, and mark
customers "not a duplicate" (`customers.merge`).

A TOML file names roles and what each may do, and gives users roles or rights:

    [roles]
    manager = ["tasks.edit", "tasks.reopen", "tasks.delete"]
    agent = ["tasks.edit"]

    [users]
    u-42 = ["manager"]
    u-7 = ["agent", "tasks.delete"]

Without a policy file everything is allowed (the spec's default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ledger.config import ConfigError

RIGHTS = ("tasks.edit", "tasks.reopen", "tasks.delete", "customers.merge")


@dataclass(frozen=True)
class RightsPolicy:
    """Which rights each user has, through roles or directly; not `enforced`, every user
    has every right."""

    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    users: dict[str, frozenset[str]] = field(default_factory=dict)
    enforced: bool = True

    def allows(self, user_id: str, right: str) -> bool:
        if not self.enforced:
            return True
        granted: set[str] = set()
        for name in self.users.get(user_id, frozenset()):
            granted |= self.roles.get(name, frozenset({name}))
        return right in granted


ALLOW_ALL = RightsPolicy(enforced=False)


def load_policy(path: str | Path | None) -> RightsPolicy:
    """The policy in the TOML file at `path` (ALLOW_ALL without one); ConfigError saying
    what is wrong with the file."""
    if path is None:
        return ALLOW_ALL
    import tomllib  # here: most commands run without a policy file and need not import it

    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"rights policy {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"rights policy {path}: not valid TOML: {exc}") from None
    unknown = set(raw) - {"roles", "users"}
    if unknown:
        raise ConfigError(f"rights policy {path}: unknown table [{sorted(unknown)[0]}]")
    roles: dict[str, frozenset[str]] = {}
    for role, rights in raw.get("roles", {}).items():
        _check_list(path, f"roles.{role}", rights)
        bad = set(rights) - set(RIGHTS)
        if bad:
            raise ConfigError(
                f"rights policy {path}: roles.{role}: unknown right {sorted(bad)[0]!r} "
                f"(known: {', '.join(RIGHTS)})"
            )
        roles[role] = frozenset(rights)
    users: dict[str, frozenset[str]] = {}
    for user, grants in raw.get("users", {}).items():
        _check_list(path, f"users.{user}", grants)
        bad = {g for g in grants if g not in roles and g not in RIGHTS}
        if bad:
            raise ConfigError(
                f"rights policy {path}: users.{user}: {sorted(bad)[0]!r} is neither a role "
                "nor a right"
            )
        users[user] = frozenset(grants)
    return RightsPolicy(roles=roles, users=users)


def _check_list(path: str | Path, key: str, value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"rights policy {path}: {key}: must be a list of strings")
