"""Timeline kinds, as the spec's timeline filter names them: each event type has one.

Apart from the event contracts so that the filter's choices (the CLI's `--kind`,
the API's `kind`) cost a tab read nothing to import.
"""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal[
    "calls",
    "emails",
    "sms",
    "chats",
    "visits",
    "orders",
    "segments",
    "tasks",
    "notes",
    "files",
    "card",
]
KINDS: tuple[str, ...] = get_args(Kind)
