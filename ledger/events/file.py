from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ledger.events.common import Id, NonNegativeInt, Payload, Url


class FileAttached(Payload):
    type_name = "file.attached"
    personal = ("name", "url")
    kind = "files"
    subject_kind = "file"
    subject_field = "file_id"

    file_id: Id
    name: Annotated[str, Field(min_length=1, max_length=1000)]
    size_bytes: NonNegativeInt
    content_type: str | None = None
    url: Url | None = None
