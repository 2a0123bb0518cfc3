from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ledger.events.common import Id, NonNegativeInt, Payload, Url

VisitChannel = Literal["search", "ppc", "referral", "email", "direct", "social", "other"]


class VisitRecorded(Payload):
    type_name = "visit.recorded"
    personal = ("landing_page",)
    kind = "visits"
    subject_kind = "visit"
    subject_field = "visit_id"
    creates_subject = True

    visit_id: Id
    site: str | None = None
    source: Annotated[str, Field(min_length=1, max_length=1000)]
    channel: VisitChannel
    duration_s: NonNegativeInt
    pages_viewed: NonNegativeInt | None = None
    landing_page: Url | None = None
    campaign: str | None = None
