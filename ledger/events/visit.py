from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from ledger.events.common import Contract, Id, NonNegativeInt, Payload, Upcaster, Url

VisitChannel = Literal["search", "ppc", "referral", "email", "direct", "social", "other"]


UtmValue = Annotated[str, Field(min_length=1, max_length=1000)]


class Utm(Contract):
    """The web-analytics campaign of a visit (the link's `utm_*` parameters)."""

    source: UtmValue | None = None
    medium: UtmValue | None = None
    campaign: UtmValue | None = None
    term: UtmValue | None = None
    content: UtmValue | None = None


def _campaign_to_utm(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 to 2: the flat `campaign` string becomes `utm.campaign`; an
    empty one is left out."""
    upcast = {k: v for k, v in data.items() if k != "campaign"}
    if data.get("campaign"):  # an empty campaign is none (`utm` values are not empty)
        upcast["utm"] = {"campaign": data["campaign"]}
    return upcast


class VisitRecorded(Payload):
    """A visit to the shop's site. Version 2: the campaign is the `utm` object
    (version 1's flat `campaign` is `utm.campaign`)."""

    type_name = "visit.recorded"
    schema_version = 2
    upcasters: ClassVar[Mapping[int, Upcaster]] = {1: _campaign_to_utm}
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
    utm: Utm | None = None
