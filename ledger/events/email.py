from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ledger.events.common import Id, Payload, Url


class _EmailPayload(Payload):
    kind = "emails"
    subject_kind = "email"
    subject_field = "message_id"

    message_id: Id


class EmailSent(_EmailPayload):
    type_name = "email.sent"
    personal = ("to", "subject")
    creates_subject = True

    subject: Annotated[str, Field(max_length=1000)]
    to: str | None = None
    campaign_id: Id | None = None


class EmailDelivered(_EmailPayload):
    type_name = "email.delivered"


class EmailOpened(_EmailPayload):
    type_name = "email.opened"


class EmailClicked(_EmailPayload):
    type_name = "email.clicked"
    personal = ("url",)

    url: Url


class EmailBounced(_EmailPayload):
    type_name = "email.bounced"

    reason: str | None = None
