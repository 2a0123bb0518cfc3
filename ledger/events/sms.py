from __future__ import annotations

from ledger.events.common import Id, Payload, Text


class _SmsPayload(Payload):
    kind = "sms"
    subject_kind = "sms"
    subject_field = "message_id"

    message_id: Id


class SmsSent(_SmsPayload):
    type_name = "sms.sent"
    personal = ("to", "text")

    to: str | None = None
    text: Text | None = None


class SmsDelivered(_SmsPayload):
    type_name = "sms.delivered"

    reason: str | None = None


class SmsFailed(_SmsPayload):
    type_name = "sms.failed"

    reason: str | None = None
