"""The merge page's words: what moves, the undo window, the refusals as
sentences, and a flash notice that carries a link."""

from __future__ import annotations

from datetime import timedelta

from api.page_flash import merge_refusal
from api.page_merging import moved_text, window_text
from api.page_session import SessionSigner
from services.errors import Category, ServiceError


def test_what_moves_is_said_in_words() -> None:
    moved = {"timeline": 83, "tasks": 3, "visits": 0, "chats": 2, "orders": 1, "card": 1}
    assert moved_text(moved) == "83 timeline entries, 3 tasks, 2 chats, 1 order and 1 card change"
    assert moved_text({"emails": 1}) == "1 e-mail"
    assert moved_text({"timeline": 0}) == "nothing"
    assert moved_text({"timeline": 1200}) == "1,200 timeline entries"


def test_the_undo_window_in_words() -> None:
    assert window_text(timedelta(days=30)) == "30 days"
    assert window_text(timedelta(hours=12)) == "12 hours"
    assert window_text(timedelta(minutes=90)) == "90 minutes"
    assert window_text(timedelta(hours=1)) == "1 hour"
    assert window_text(timedelta(seconds=45)) == "45 seconds"


def test_refusals_are_sentences_with_names_not_codes() -> None:
    def said(code: str | None, category: Category = Category.CONFLICT, undo: bool = False) -> str:
        exc = ServiceError(category, "machine text", code=code)
        notice = merge_refusal(exc, name="Ben Okafor", priority="Anna Petrova", undo=undo)
        assert notice.kind == "error"
        return notice.text

    assert said("confirmation_needed") == (
        'They share no phone number or e-mail address: tick "They are the same person" '
        "to merge anyway."
    )
    assert said("already_absorbed") == "Ben Okafor is already merged into another card."
    assert said("customer_absorbed") == (
        "Anna Petrova was merged into another card: merge into that card instead."
    )
    assert said("right_missing", Category.FORBIDDEN) == "You are not allowed to merge customers."
    assert said("right_missing", Category.FORBIDDEN, undo=True) == (
        "You are not allowed to undo merges."
    )
    assert said("undo_window_passed", undo=True) == "This merge is too old to be undone."
    assert said("reason_missing", Category.USAGE, undo=True) == "Say why the merge is undone."
    assert said(None, Category.UNAVAILABLE).startswith("The ledger cannot be reached")
    assert said("customer_erased") == (
        "A customer whose personal data was erased cannot be merged, nor a merge with them undone."
    )
    # A choice of what to keep that the cards no longer allow (a stale preview).
    for code in ("keep_unknown", "keep_outside", "keep_missing"):
        assert said(code, Category.USAGE) == (
            "The cards changed while you chose: review the merge again."
        )
    for code in ("same_customer", "holds_merged", "listed_twice", "not_merged"):
        assert "_" not in said(code)


def test_a_flash_notice_carries_its_link() -> None:
    signer = SessionSigner(b"secret")
    session = signer.new()
    plain = signer.flash(session, "Merged Ben Okafor into this card.", "info")
    assert signer.load_flash(session, plain) == ("Merged Ben Okafor into this card.", "info", None)
    linked = signer.flash(session, "Undid it.", "info", ("/customers/web-88", "Open B.'s card"))
    assert signer.load_flash(session, linked) == (
        "Undid it.",
        "info",
        ("/customers/web-88", "Open B.'s card"),
    )
    assert signer.load_flash(signer.new(), linked) is None  # another session's
