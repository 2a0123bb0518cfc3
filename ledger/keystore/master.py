"""The master key, which wraps every data key and is kept outside the database.

The master key is 32 random bytes, base64 on one line, in the file named by
`--master-key` or LEDGER_MASTER_KEY_FILE; for an embedded (SQLite) ledger without
either, one is generated beside the database file (`<db>.master-key`) with a
warning to move it. Its id (a hash) is stored with each wrapped key, so a wrong
master key is named in one line instead of failing as tampering.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.config import DatabaseURL
from ledger.environment import MASTER_KEY_ENV
from ledger.keystore.errors import KeystoreError

_master_override: Path | None = None

# What os.link raises on a filesystem without hard links (FAT, some network and
# FUSE mounts).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})
# How long a starter waits for a key file another process is still writing.
_WHOLE_WAIT_S = 2.0
# A whole key's text: 32 bytes in base64.
_KEY_TEXT_LENGTH = 44


def override_master_key_path(path: Path | None) -> bool:
    """`--master-key PATH`: takes precedence over LEDGER_MASTER_KEY_FILE. True when
    that changed which key file is used (cached keyrings then hold the old key)."""
    global _master_override
    if path == _master_override:
        return False
    _master_override = path
    return True


def master_key_path(url: DatabaseURL) -> tuple[Path | None, bool]:
    """The master key file to use and whether it is the embedded default."""
    if _master_override is not None:
        return _master_override, False
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        return Path(env), False
    if url.kind == "sqlite":
        return Path(url.path + ".master-key"), True
    return None, False


def new_master_key_file(path: Path) -> bytes:
    """Write a fresh master key to `path` (owner-only), refusing to overwrite one
    (FileExistsError). The key is written whole, and to disk, under a name of its
    own, then linked in as `path`: a process that finds `path` reads a whole key
    (several server workers start on a new embedded store at once). Where the
    filesystem has no hard links, `path` is claimed (O_EXCL) and written in
    place instead; `load_master` then waits for the key to be whole."""
    key = AESGCM.generate_key(bit_length=256)
    line = base64.b64encode(key).decode() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, written = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # owner-only
    try:
        _write_synced(fd, line)
        try:
            os.link(written, path)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            claimed = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_synced(claimed, line)
            except BaseException:
                os.unlink(path)  # no part of a key left behind (a full disk)
                raise
    finally:
        os.unlink(written)
    return key


def _write_synced(fd: int, line: str) -> None:
    with os.fdopen(fd, "w") as f:
        f.write(line)
        f.flush()
        # Data keys are wrapped by it as soon as it is returned: on disk first.
        os.fsync(f.fileno())


def _wait_until_whole(path: Path) -> None:
    """Wait (a little) while `path` is a key file another process is still writing
    in place: shorter than a key (a whole one, with or without its line end, is
    read at once)."""
    deadline = time.monotonic() + _WHOLE_WAIT_S
    while time.monotonic() < deadline:
        try:
            if len(path.read_bytes().strip()) >= _KEY_TEXT_LENGTH:
                return
        except OSError:
            return  # read_master_key_file says why
        time.sleep(0.01)


def read_master_key_file(path: Path) -> bytes:
    """The master key in `path`: 32 bytes, base64 on one line. KeystoreError, saying
    what to do, if it cannot be read or is not such a key."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise KeystoreError(
            f"cannot read the master key {path}: {exc.strerror} "
            f"(set {MASTER_KEY_ENV} to the master key file; `ledger keys init` creates one)"
        ) from None
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise KeystoreError(f"master key {path} is not 32 bytes in base64 (one line)")
    return key


def master_id(key: bytes) -> str:
    """The id stored with each key wrapped by `key`: a hash that names the master key
    without revealing it."""
    return hashlib.sha256(b"ledger master key id\x00" + key).hexdigest()[:16]


def load_master(url: DatabaseURL) -> bytes:
    """The master key of the ledger at `url`, read from its file (or generated beside
    an embedded database that has none); KeystoreError, saying what to do, if none."""
    path, embedded = master_key_path(url)
    if path is None:
        raise KeystoreError(
            f"no master key: set {MASTER_KEY_ENV} to the master key file "
            "(`ledger keys init` creates one); personal data cannot be read or written without it"
        )
    if embedded and not path.exists():
        try:
            key = new_master_key_file(path)
        except FileExistsError:
            _wait_until_whole(path)
            return read_master_key_file(path)  # another process made it meanwhile
        print(
            f"warning: generated the master key {path} beside the database; move it off "
            f"this disk and point {MASTER_KEY_ENV} at it (see docs/privacy.md)",
            file=sys.stderr,
        )
        return key
    if embedded:
        _wait_until_whole(path)
    return read_master_key_file(path)
