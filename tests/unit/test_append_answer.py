"""The answer to an append without rejections is written directly; it must be
the very text `AppendResult` gives (the OpenAPI document's model)."""

from __future__ import annotations

import pytest

from api.models import AppendResult
from api.routes.events import append_answer
from ledger.appending.report import AppendReport


@pytest.mark.parametrize(
    "report",
    [
        AppendReport(appended=1, first_position=7, last_position=7),
        AppendReport(duplicates=1),
        AppendReport(appended=3, duplicates=2, first_position=1, last_position=10**12),
        AppendReport(),
    ],
)
def test_the_direct_answer_is_the_model_s_json(report: AppendReport) -> None:
    model = AppendResult(
        appended=report.appended,
        duplicates=report.duplicates,
        rejected=[],
        rejected_omitted=0,
        first_position=report.first_position,
        last_position=report.last_position,
    )
    answer = append_answer(report)
    assert answer.body == model.model_dump_json().encode()
    assert answer.media_type == "application/json"
