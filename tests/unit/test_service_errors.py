"""A ServiceError survives pickling whole: worker processes (a benchmark's
appenders, a process pool) hand failures back to their parent."""

from __future__ import annotations

import pickle

from services.errors import Category, RejectedField, ServiceError


def test_a_service_error_pickles_with_its_category_fields_and_code() -> None:
    error = ServiceError(
        Category.REJECTED,
        "1 event rejected",
        [RejectedField(0, "e-1", "note.added", "data.text", "too long", code="too_long")],
    )
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ServiceError)
    assert (copy.category, copy.message, copy.code) == (
        Category.REJECTED,
        "1 event rejected",
        "too_long",
    )
    assert copy.errors == error.errors and copy.field == "data.text"
