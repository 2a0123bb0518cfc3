"""What the card page says after a form: a plain sentence for each outcome.

A refusal is said from the rule's stable code (`ServiceError.code`, the
domain's `RuleViolation.code`), never by reading the message's text; the API
keeps the code and the field for machines. A success says what happened."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from api.page_view import Notice, plain_text
from services.errors import Category, ServiceError

# Verbs of the task actions, for "You are not allowed to ... this task."
_VERBS = {"edit": "edit", "complete": "complete", "reopen": "reopen", "delete": "delete"}

_SENTENCES: dict[str, str] = {
    "task_is_completed": "This task is already completed.",
    "task_is_pending": "This task is not completed, so it cannot be reopened.",
    "task_is_deleted": "This task no longer exists.",
    "task_missing": "This task no longer exists.",
    "customer_missing": "There is no such customer.",
    "customer_erased": "This customer's personal data was erased; nothing can be added.",
    "bad_time": "The due date is not a date and time the ledger can read.",
    "key_reused": "This form was already sent for something else; reload the page.",
}

# Fields whose values the contracts refuse, in words.
_FIELDS: dict[str, str] = {
    "data.title": "The title must not be empty or longer than 1,000 characters.",
    "data.text": "The text must not be empty or longer than 100,000 characters.",
    "data.assignee_id": "That assignee cannot be saved.",
    "data.due_at": "The due date is not a date and time the ledger can read.",
}

DONE: dict[str, str] = {
    "complete": "Task completed.",
    "reopen": "Task reopened.",
    "delete": "Task deleted.",
}


def refusal_notice(exc: ServiceError, action: str | None = None) -> Notice:
    """The plain sentence for a refusal of `action` (a task action, or None
    when adding)."""
    code = exc.code
    if code == "right_missing" or (code is None and exc.category == Category.FORBIDDEN):
        verb = _VERBS.get(action or "", "change")
        return Notice(f"You are not allowed to {verb} this task.", "error")
    if code in _SENTENCES:
        return Notice(_SENTENCES[code], "error")
    for error in exc.errors:
        if error.field in _FIELDS:
            return Notice(_FIELDS[error.field], "error")
    if exc.category == Category.UNAVAILABLE:
        return Notice("The ledger cannot be reached just now; try again in a moment.", "error")
    return Notice(f"This could not be done: {plain_text(exc.message)}.", "error")


def saved(changes: Sequence[Mapping[str, Any]], people: Mapping[str, str]) -> Notice:
    """What an edit did, in words; that nothing changed when nothing did."""
    if not changes:
        return Notice("Nothing to save: the task already had these values.")
    said = []
    for change in changes:
        field, new = change["field"], change["new"]
        if field == "title":
            said.append("title changed")
        elif field == "assignee_id":
            said.append(
                "assignee removed"
                if new is None
                else f"assigned to {plain_text(people.get(new, new))}"
            )
        elif field == "due_at":
            said.append("due date removed" if new is None else "due date changed")
        else:
            said.append(f"{plain_text(field)} changed")
    return Notice("Task saved: " + ", ".join(said) + ".")


# A choice of what to keep made on a preview the cards have changed since.
_STALE_PREVIEW = "The cards changed while you chose: review the merge again."

# A merge's or an undo's refusals, in words; `{name}`: the customer merged in
# (or released), `{priority}`: the customer whose card is kept.
_MERGE_SENTENCES: dict[str, str] = {
    "confirmation_needed": (
        'They share no phone number or e-mail address: tick "They are the same '
        'person" to merge anyway.'
    ),
    "same_customer": "A customer cannot be merged into their own card.",
    "listed_twice": "A customer cannot be merged in twice at once.",
    "customer_absorbed": ("{priority} was merged into another card: merge into that card instead."),
    "already_absorbed": "{name} is already merged into another card.",
    "holds_merged": (
        "Other customers are merged into {name}'s card: undo those merges first, or "
        "merge each of them here on its own."
    ),
    "customer_missing": "There is no such customer.",
    "not_merged": "{name} is not merged into this card (any more).",
    "undo_window_passed": "This merge is too old to be undone.",
    "customer_erased": (
        "A customer whose personal data was erased cannot be merged, nor a merge with them undone."
    ),
    "keep_unknown": _STALE_PREVIEW,
    "keep_outside": _STALE_PREVIEW,
    "keep_missing": _STALE_PREVIEW,
}


def merge_refusal(exc: ServiceError, *, name: str, priority: str, undo: bool = False) -> Notice:
    """The plain sentence for a refused merge (or, `undo`, a refused undo) of the
    customer called `name` into the one called `priority`."""
    code = exc.code
    if code == "right_missing" or (code is None and exc.category == Category.FORBIDDEN):
        verb = "undo merges" if undo else "merge customers"
        return Notice(f"You are not allowed to {verb}.", "error")
    if code == "reason_missing":
        what = "the merge is undone" if undo else "these customers are merged"
        return Notice(f"Say why {what}.", "error")
    if code in _MERGE_SENTENCES:
        text = _MERGE_SENTENCES[code].format(name=plain_text(name), priority=plain_text(priority))
        return Notice(text, "error")
    if exc.category == Category.UNAVAILABLE:
        return Notice("The ledger cannot be reached just now; try again in a moment.", "error")
    return Notice(f"This could not be done: {plain_text(exc.message)}.", "error")
