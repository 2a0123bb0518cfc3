from __future__ import annotations

from ledger.events.common import Id, Payload


class _SegmentPayload(Payload):
    kind = "segments"
    subject_kind = "segment"
    subject_field = "segment_id"

    segment_id: Id
    segment_name: str | None = None
    reason: str | None = None


class SegmentJoined(_SegmentPayload):
    type_name = "segment.joined"


class SegmentLeft(_SegmentPayload):
    type_name = "segment.left"
