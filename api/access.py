"""Access keys: who may call the API, with which scopes, acting as which user.

The access file is TOML, one table per key, holding the SHA-256 of the token
(never the token itself):

    [keys.crm-backend]
    sha256 = "9f86d08..."
    scopes = ["read", "tasks", "act-as"]
    user = "u-42"            # optional: the user `tasks` acts as
    tenant = "shop-1"        # optional: the one tenant the key is of
                             # (or `all_tenants = true`: an operator key)

`ledger access new-key` prints a fresh token once and adds its entry. A
presented token is hashed and compared with every entry's hash in constant
time, so neither timing nor an early exit tells which prefix matched.

A running server holds a `LiveAccess`: the file as it is on disk now, read
again when it changes (and on SIGHUP, `api.serve`), so removing a key ends
its calls and page sessions within about a second, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.scopes import SCOPES
from ledger.config import ConfigError
from ledger.tenants import check_tenant_id

log = logging.getLogger("ledger.access")

RELOAD_INTERVAL = 1.0  # seconds between looks at the file's metadata

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class AccessKey:
    """One entry of the access file: a key's name, its token's SHA-256, its scopes
    and the user it acts as (if any)."""

    name: str
    sha256: str
    scopes: frozenset[str]
    user: str | None = None
    tenant: str | None = None  # the tenant the key is of (None: no one tenant)
    all_tenants: bool = False  # an operator key: each request names its tenant

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def fingerprint(self) -> str:
        """Tells this key from a later one of the same name (a rotated token, or
        the same token given to another tenant), e.g. in a page session, without
        carrying its hash around."""
        seed = b"ledger/access-key:" + self.sha256.encode()
        if self.tenant is not None:
            seed += b"/tenant:" + self.tenant.encode()
        if self.all_tenants:
            seed += b"/all-tenants"
        return hashlib.sha256(seed).hexdigest()[:16]


@dataclass(frozen=True)
class AccessFile:
    """The access file as loaded once: its path and its keys, in file order."""

    path: Path
    keys: tuple[AccessKey, ...]

    def verify(self, token: str) -> AccessKey | None:
        """The key whose token this is, or None. Every entry is compared, in
        constant time each, whatever matches."""
        digest = token_hash(token)
        found: AccessKey | None = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.sha256):
                found = key
        return found


class LiveAccess:
    """The access file as it is on disk now. Requests ask for `keys` or
    `verify`; at most once per `interval` one of them looks at the file's
    metadata (one stat, no read) and loads it again when it changed. A file
    that no longer loads (broken, half-written, gone) never opens the server:
    the last good keys stay in force and one line says why, once per change."""

    def __init__(
        self,
        loaded: AccessFile,
        *,
        interval: float = RELOAD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = loaded.path
        self._file = loaded
        self._interval = interval
        self._clock = clock
        self._next_look = clock() + interval
        self._seen = self._signature()
        self._failed: tuple[int, ...] | None = None
        # Never waited on by a request: whoever holds it is already looking.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> LiveAccess:
        return cls(load_access(path), **options)

    @property
    def keys(self) -> tuple[AccessKey, ...]:
        return self.current().keys

    def verify(self, token: str) -> AccessKey | None:
        return self.current().verify(token)

    def current(self) -> AccessFile:
        now = self._clock()
        if now >= self._next_look and self._lock.acquire(blocking=False):
            try:
                self._next_look = now + self._interval
                self._refresh(force=False)
            finally:
                self._lock.release()
        return self._file

    def reload(self) -> None:
        """Load the file now, changed or not (SIGHUP)."""
        with self._lock:
            self._refresh(force=True)

    def _signature(self) -> tuple[int, ...] | None:
        """What tells a changed file from the same one, or None to load it again
        at the next look: a file modified within the last two seconds may be
        written again within the same timestamp tick, at the same size."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        if time.time() - st.st_mtime < 2:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _refresh(self, *, force: bool) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._keep_last_good(f"access file {self.path}: cannot read: {exc.strerror}", ())
            return
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if not force and self._seen is not None and signature == self._seen:
            return
        self._seen = self._signature()
        try:
            loaded = load_access(self.path)
        except ConfigError as exc:
            self._keep_last_good(str(exc), signature)
            return
        self._failed = None
        if force or loaded.keys != self._file.keys:
            log.info("access file %s loaded: %d keys", self.path, len(loaded.keys))
        self._file = loaded

    def _keep_last_good(self, reason: str, signature: tuple[int, ...]) -> None:
        if signature != self._failed:
            # Only ConfigError's text: it names the file, the key and the field
            # at fault, never a hash.
            log.warning("%s; the last good access file stays in force", reason)
        self._failed = signature


def token_hash(token: str) -> str:
    """The SHA-256 hex digest of a token, as the access file stores it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def load_access(path: str | Path) -> AccessFile:
    """Read and check the access file; a ConfigError names the file, the key and
    the field at fault (never a hash)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"access file {path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"access file {path}: not valid TOML: {exc}") from None
    unknown = set(raw) - {"keys"}
    if unknown:
        raise ConfigError(f"access file {path}: unknown table [{sorted(unknown)[0]}]")
    keys = []
    entries = raw.get("keys", {})
    if not isinstance(entries, dict):
        raise ConfigError(f"access file {path}: [keys] must be a table of keys")
    for name, entry in entries.items():
        keys.append(_key(path, name, entry))
    return AccessFile(path, tuple(keys))


def _key(path: Path, name: str, entry: object) -> AccessKey:
    where = f"access file {path}: keys.{name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(entry) - {"sha256", "scopes", "user", "tenant", "all_tenants"}
    if unknown:
        raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise ConfigError(f"{where}: sha256 must be 64 lower-case hex digits")
    scopes = entry.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ConfigError(f"{where}: scopes must be a list of strings")
    bad = sorted(set(scopes) - set(SCOPES))
    if bad:
        raise ConfigError(f"{where}: unknown scope {bad[0]!r} (scopes: {', '.join(SCOPES)})")
    user = entry.get("user")
    if user is not None and (not isinstance(user, str) or not user):
        raise ConfigError(f"{where}: user must be a non-empty string")
    tenant = entry.get("tenant")
    if tenant is not None:
        if not isinstance(tenant, str):
            raise ConfigError(f"{where}: tenant must be a tenant id")
        try:
            check_tenant_id(tenant)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    all_tenants = entry.get("all_tenants", False)
    if not isinstance(all_tenants, bool):
        raise ConfigError(f"{where}: all_tenants must be true or false")
    if tenant is not None and all_tenants:
        raise ConfigError(f"{where}: a key is of one tenant or of all tenants, not both")
    return AccessKey(name, sha, frozenset(scopes), user, tenant, all_tenants)


@dataclass(frozen=True)
class NewKey:
    """What `new_key` made: the token (shown once, stored nowhere) and its entry."""

    token: str
    entry: str  # the TOML added to the access file


def new_key(
    path: str | Path,
    name: str,
    scopes: list[str],
    user: str | None,
    *,
    tenant: str | None = None,
    all_tenants: bool = False,
) -> NewKey:
    """Make a fresh token, add its entry (hash only) to the access file, and
    return both; the token is not kept anywhere. `tenant` makes a key of that
    tenant, `all_tenants` an operator key (whose requests name their tenant)."""
    path = Path(path)
    if tenant is not None and all_tenants:
        raise ConfigError("a key is of one tenant (--tenant) or of all (--all-tenants), not both")
    if tenant is not None:
        check_tenant_id(tenant)
    if not _NAME.match(name):
        raise ConfigError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    bad = sorted(set(scopes) - set(SCOPES))
    if bad:
        raise ConfigError(f"unknown scope {bad[0]!r} (scopes: {', '.join(SCOPES)})")
    if not scopes:
        raise ConfigError("give at least one scope")
    existing = load_access(path) if path.exists() else AccessFile(path, ())
    if any(k.name == name for k in existing.keys):
        raise ConfigError(f"access file {path}: a key named {name!r} exists already")
    token = secrets.token_urlsafe(32)
    lines = [
        f"[keys.{name}]",
        f'sha256 = "{token_hash(token)}"',
        # JSON strings are valid TOML basic strings for the characters we allow.
        f"scopes = [{', '.join(json.dumps(s) for s in dict.fromkeys(scopes))}]",
    ]
    if user is not None:
        lines.append(f"user = {json.dumps(user, ensure_ascii=True)}")
    if tenant is not None:
        lines.append(f"tenant = {json.dumps(tenant)}")
    if all_tenants:
        lines.append("all_tenants = true")
    entry = "\n".join(lines) + "\n"
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    separator = (
        "" if not before or before.endswith("\n\n") else ("\n" if before.endswith("\n") else "\n\n")
    )
    # Written whole and renamed into place: a reader never sees half an entry. The
    # file holds SHA-256 hashes of 256-bit random tokens, which reveal nothing
    # useful: readable by the server's user (another uid in a container) by default,
    # an existing file keeps its mode.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(before + separator + entry)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    load_access(path)  # what we wrote must load
    return NewKey(token, entry)
