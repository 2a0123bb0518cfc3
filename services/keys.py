"""Master-key management (`ledger keys`): create, report, rotate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ledger.keystore.errors import KeystoreError
from ledger.keystore.keyring import Keyring, KeyStatus, set_master_key_path
from ledger.keystore.master import new_master_key_file, read_master_key_file
from services.errors import Category, ServiceError, service_errors

# Imported for its type only: a tab read (which sets the master key's path)
# needs no eventsourcing library (tests/integration/test_startup.py).
if TYPE_CHECKING:
    from ledger.application import LedgerApplication


def use_master_key(path: Path | None) -> None:
    """The master key file a caller was given (`--master-key PATH`); it takes
    precedence over the environment. None: the environment and defaults apply."""
    set_master_key_path(path)


def init_master_key(path: Path) -> str:
    """Create a new master key file; refuses to overwrite one."""
    try:
        key = new_master_key_file(path)
    except FileExistsError:
        raise ServiceError(
            Category.USAGE, f"{path} exists: a master key is never overwritten"
        ) from None
    except OSError as exc:
        raise ServiceError(Category.USAGE, f"cannot write {path}: {exc.strerror}") from exc
    from ledger.keystore.master import master_id

    return master_id(key)


def keys_status(app: LedgerApplication) -> KeyStatus:
    """The master key's and the data keys' state."""
    with service_errors():
        return Keyring.for_url(app.url).status()


def rotate_master(app: LedgerApplication, new_key_path: Path) -> int:
    """Rewrap every data key under the master key in `new_key_path`."""
    with service_errors():
        try:
            new_key = read_master_key_file(new_key_path)
        except KeystoreError as exc:
            raise ServiceError(Category.USAGE, str(exc)) from exc
        return Keyring.for_url(app.url).rotate_master(new_key)
