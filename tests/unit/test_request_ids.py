"""New request ids (`api.middleware.RequestIds`): unique, 32 hex digits, made
without a system call, and apart in a forked child."""

from __future__ import annotations

import os
import re

import pytest

from api import middleware
from api.middleware import RequestIds, request_id_of


def test_new_ids_are_32_hex_digits_and_unique() -> None:
    ids = RequestIds()
    made = [ids.next() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == len(made)
    assert RequestIds().next() != RequestIds().next()  # each process draws its own key


def test_a_new_id_reads_no_random_bytes_from_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    # os.urandom gives up the interpreter lock on the event loop (see RequestIds).
    def refuse(n: int) -> bytes:
        raise AssertionError("os.urandom called for a request id")

    monkeypatch.setattr(os, "urandom", refuse)
    scope = {"headers": [(b"x-request-id", b"bad id")]}
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_of(scope))


def test_a_forked_child_makes_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, middleware.request_id_of({"headers": []}).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != middleware.request_id_of({"headers": []})
