"""The keystore's one error: a key problem a user must fix."""

from __future__ import annotations


class KeystoreError(Exception):
    """A key problem a user must fix (missing or wrong master key, a store of the
    old format); the message is one line saying what to do."""
