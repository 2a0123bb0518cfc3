"""Personal values in read-model rows: stored encrypted, revealed on query.

Read models keep the customer's personal values (a task's title, an e-mail's
subject, card and order changes, the timeline's summary of a personal event)
encrypted under the customer's data key, as one text cell

    "\\x1benc1|<hint>|<customer id, base64url>|<base64 of nonce + ciphertext>"

so the database holds no plaintext, and erasure (destroying the key) needs no
purge: the next query shows the cell as erased, at once. `hint` says what an
erased cell reads as: `t` "[erased]" (a text column), `q` the JSON string
"[erased]", `n` JSON null (a JSON column whose value was not a string).

Queries read through `RevealingConnection`, which reveals every sealed cell of
every row it returns, so no tab query needs to know which columns are personal.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.db import Connection
from ledger.keystore.ciphers import Ciphers
from ledger.keystore.keyring import Keyring
from ledger.personal import ERASED, TamperedValue

PREFIX = "\x1benc1|"
_NONCE = 12
_ERASED_AS = {"t": ERASED, "q": f'"{ERASED}"', "n": "null"}


def _aad(customer_id: str, hint: str) -> bytes:
    return f"read model\x00{customer_id}\x00{hint}".encode()


class HeldKeys:
    """The keys of one long pass over the events (a rebuild's load), each looked
    up once in the keyring. The keyring drops its cache every CACHE_SECONDS so
    an erasure elsewhere reaches readers; a load touching every customer paid
    for that with a key lookup per customer per interval. A key erased during
    the load may still seal cells here: they read as erased all the same."""

    def __init__(self, ring: Ciphers, limit: int = 100_000) -> None:
        self._ring = ring
        self._limit = limit  # memory stays bounded however many customers
        self._keys: dict[str, AESGCM | None] = {}

    def cipher(self, customer_id: str) -> AESGCM | None:
        keys = self._keys
        if customer_id in keys:
            return keys[customer_id]
        if len(keys) >= self._limit:
            keys.clear()
        key = keys[customer_id] = self._ring.cipher(customer_id)
        return key


class Sealer:
    """Seals a projection's personal cells."""

    def __init__(self, ring: Ciphers) -> None:
        self._ring = ring

    def _seal(self, customer_id: str, hint: str, text: str) -> str:
        cipher = self._ring.cipher(customer_id)
        if cipher is None:  # erased (a rebuild after the erasure): nothing to keep
            return _ERASED_AS[hint]
        nonce = os.urandom(_NONCE)
        box = nonce + cipher.encrypt(nonce, text.encode(), _aad(customer_id, hint))
        who = base64.urlsafe_b64encode(customer_id.encode()).decode()
        return f"{PREFIX}{hint}|{who}|{base64.b64encode(box).decode()}"

    def text(self, customer_id: str, value: str | None) -> str | None:
        """A personal text cell."""
        return None if value is None else self._seal(customer_id, "t", value)

    def json_text(self, customer_id: str, text: str) -> str:
        """A personal JSON cell (`text` is the value's JSON)."""
        if text == "null":
            return text
        return self._seal(customer_id, "q" if text.startswith('"') else "n", text)


def reveal_cell(ring: Ciphers, value: Any) -> Any:
    """A cell as stored, revealed: plaintext, or how an erased value reads when the
    customer's key is gone. TamperedValue if a sealed cell fails authentication."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value
    try:
        hint, who, box_text = value[len(PREFIX) :].split("|", 2)
        customer_id = base64.urlsafe_b64decode(who).decode()
        cipher = ring.cipher(customer_id)
        if cipher is None:
            return _ERASED_AS[hint]
        box = base64.b64decode(box_text, validate=True)
        return cipher.decrypt(box[:_NONCE], box[_NONCE:], _aad(customer_id, hint)).decode()
    except (InvalidTag, ValueError, KeyError) as exc:
        raise TamperedValue(
            f"tampering: a read-model cell fails authentication ({type(exc).__name__}); "
            "rebuild the read models (`ledger projections rebuild`)"
        ) from None


class RevealingConnection(Connection):
    """A view of a Connection whose query results have sealed cells revealed."""

    def __init__(self, inner: Connection) -> None:
        # Shares the inner connection's driver connection; closing stays its owner's job.
        self.url = inner.url
        self.kind = inner.kind
        self._raw = inner.raw
        self._ring = Keyring.for_url(inner.url)

    def _reveal(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(reveal_cell(self._ring, v) for v in row)

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [self._reveal(r) for r in super().fetchall(statement, params)]

    def fetchone(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = super().fetchone(statement, params)
        return None if row is None else self._reveal(row)

    def close(self) -> None:
        pass


def revealing(conn: Connection) -> Connection:
    """`conn` as a RevealingConnection (unchanged if it already is one)."""
    return conn if isinstance(conn, RevealingConnection) else RevealingConnection(conn)
