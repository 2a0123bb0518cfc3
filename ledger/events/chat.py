from __future__ import annotations

from typing import Literal

from ledger.events.common import Id, Payload, Text, Url

ChatChannel = Literal[
    "whatsapp", "facebook", "instagram", "telegram", "viber", "vk", "website", "other"
]
ChatStatus = Literal["new", "in_progress", "waiting", "closed"]


class _ChatPayload(Payload):
    kind = "chats"
    subject_kind = "dialog"
    subject_field = "dialog_id"

    dialog_id: Id


class ChatStarted(_ChatPayload):
    type_name = "chat.started"
    creates_subject = True

    channel: ChatChannel
    url: Url | None = None


class ChatMessage(_ChatPayload):
    type_name = "chat.message"
    personal = ("text",)

    message_id: Id
    direction: Literal["inbound", "outbound"]
    text: Text | None = None


class ChatStatusChanged(_ChatPayload):
    type_name = "chat.status_changed"

    status: ChatStatus
