from __future__ import annotations

from typing import Literal

from ledger.events.common import Id, NonNegativeInt, Payload, Url


class CallLogged(Payload):
    type_name = "call.logged"
    personal = ("phone", "recording_url")
    kind = "calls"
    subject_kind = "call"
    subject_field = "call_id"

    call_id: Id
    direction: Literal["inbound", "outbound"]
    result: Literal["answered", "missed", "busy", "failed"]
    duration_s: NonNegativeInt
    phone: str | None = None
    recording_url: Url | None = None
