"""Data keys as ciphers: the view a reader has of them (`Ciphers`), and a data key
wrapped (AES-256-GCM under the master key, bound to the customer id) for the key
table, and unwrapped from it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class Ciphers(Protocol):
    """Where a reader gets a customer's data key: a Keyring, or a cache over one."""

    def cipher(self, customer_id: str) -> AESGCM | None:
        """The customer's data key as a cipher; None once the customer is erased."""
        ...


def wrap(
    master: bytes, customer_id: str, key: bytes, random_bytes: Callable[[int], bytes] = os.urandom
) -> bytes:
    """`key` encrypted under `master`, bound to `customer_id`: a fresh nonce, then
    the ciphertext."""
    nonce = random_bytes(_NONCE)
    return nonce + AESGCM(master).encrypt(nonce, key, customer_id.encode())


def unwrap(master: bytes, customer_id: str, wrapped: bytes) -> bytes:
    """The key `wrap` wrapped; InvalidTag if `wrapped` or the customer id was altered."""
    return AESGCM(master).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], customer_id.encode())
