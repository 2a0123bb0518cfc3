"""The write model's rules, one test each, on a `Customer` in memory: no database.

The integration tests (test_append.py) show the same rules through the append
service; these pin down each rule's field and reason on its own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ledger.domain import Customer, RuleViolation, customer_stream_id
from ledger.events import InboundEvent, parse_inbound
from ledger.events.customer import CustomerErased
from ledger.rights import ALLOW_ALL, RightsPolicy
from tests.factories import event

CID = "c1"
EDITOR = RightsPolicy(users={"u-1": frozenset({"tasks.edit"})})


def inbound(event_type: str, data: dict[str, Any], **kw: Any) -> InboundEvent:
    return parse_inbound(event(event_type, CID, data, **kw))


def customer(*history: tuple[str, dict[str, Any]]) -> Customer:
    """A customer that exists, with `history` recorded after its creation."""
    c = Customer(id=customer_stream_id(CID), customer_id=CID)
    for event_type, data in [("customer.created", {"card": {}}), *history]:
        e = inbound(event_type, data)
        c.check(e, ALLOW_ALL)
        c.record(e, str(e.event_id), datetime.now(UTC))
    return c


def violation(
    c: Customer, event_type: str, data: dict[str, Any], policy: RightsPolicy = ALLOW_ALL, **kw: Any
) -> str:
    with pytest.raises(RuleViolation) as caught:
        c.check(inbound(event_type, data, **kw), policy)
    return str(caught.value)


ORDER = {"order_id": "o1", "status": "new"}
EMAIL = {"message_id": "m1", "subject": "Hello"}
SMS = {"message_id": "s1"}
CHAT = {"dialog_id": "d1", "channel": "website"}
TASK = {"task_id": "t1", "title": "Call back"}
VISIT = {"visit_id": "v1", "source": "google", "channel": "search", "duration_s": 30}
CHANGES = {"changes": [{"field": "x", "old": 1, "new": 2}]}


def test_a_customer_is_created_once() -> None:
    assert violation(customer(), "customer.created", {"card": {}}) == (
        "customer_id: customer 'c1' already exists"
    )


def test_every_other_event_needs_its_customer() -> None:
    nobody = Customer(id=customer_stream_id(CID), customer_id=CID)
    assert violation(nobody, "note.added", {"note_id": "n1", "text": "hi"}) == (
        "customer_id: customer 'c1' does not exist"
    )


def test_an_order_id_is_created_once() -> None:
    assert violation(customer(("order.created", ORDER)), "order.created", ORDER) == (
        "data.order_id: order 'o1' already exists"
    )


def test_an_order_changes_only_once_created_for_this_customer() -> None:
    assert violation(customer(), "order.changed", {"order_id": "o1", **CHANGES}) == (
        "data.order_id: order 'o1' does not exist for this customer"
    )


def test_an_email_is_sent_once() -> None:
    assert violation(customer(("email.sent", EMAIL)), "email.sent", EMAIL) == (
        "data.message_id: email 'm1' already exists"
    )


@pytest.mark.parametrize(
    ("event_type", "extra"),
    [
        ("email.delivered", {}),
        ("email.opened", {}),
        ("email.clicked", {"url": "https://x"}),
        ("email.bounced", {}),
    ],
)
def test_email_feedback_needs_the_email_sent(event_type: str, extra: dict[str, Any]) -> None:
    assert violation(customer(), event_type, {"message_id": "m1", **extra}) == (
        "data.message_id: email 'm1' does not exist for this customer"
    )
    customer(("email.sent", EMAIL), (event_type, {"message_id": "m1", **extra}))


@pytest.mark.parametrize("event_type", ["sms.delivered", "sms.failed"])
def test_sms_feedback_needs_the_sms_sent(event_type: str) -> None:
    assert violation(customer(), event_type, SMS) == (
        "data.message_id: sms 's1' was not sent to this customer"
    )
    customer(("sms.sent", SMS), (event_type, SMS))


def test_joining_a_segment_needs_not_being_a_member() -> None:
    joined = customer(("segment.joined", {"segment_id": "vip"}))
    assert violation(joined, "segment.joined", {"segment_id": "vip"}) == (
        "data.segment_id: already a member of segment 'vip'"
    )


def test_leaving_a_segment_needs_being_a_member() -> None:
    assert violation(customer(), "segment.left", {"segment_id": "vip"}) == (
        "data.segment_id: not a member of segment 'vip'"
    )
    left = customer(
        ("segment.joined", {"segment_id": "vip"}), ("segment.left", {"segment_id": "vip"})
    )
    assert violation(left, "segment.left", {"segment_id": "vip"}).endswith("segment 'vip'")


def test_a_dialogue_is_started_once() -> None:
    assert violation(customer(("chat.started", CHAT)), "chat.started", CHAT) == (
        "data.dialog_id: dialogue 'd1' already exists"
    )


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("chat.message", {"dialog_id": "d1", "message_id": "cm1", "direction": "inbound"}),
        ("chat.status_changed", {"dialog_id": "d1", "status": "waiting"}),
    ],
)
def test_a_dialogue_must_exist(event_type: str, data: dict[str, Any]) -> None:
    assert violation(customer(), event_type, data) == (
        "data.dialog_id: dialogue 'd1' does not exist for this customer"
    )


def test_a_closed_dialogue_takes_no_messages_but_may_reopen() -> None:
    closed = customer(
        ("chat.started", CHAT), ("chat.status_changed", {"dialog_id": "d1", "status": "closed"})
    )
    message = {"dialog_id": "d1", "message_id": "cm1", "direction": "inbound"}
    assert violation(closed, "chat.message", message) == "data.dialog_id: dialogue 'd1' is closed"
    customer(
        ("chat.started", CHAT),
        ("chat.status_changed", {"dialog_id": "d1", "status": "closed"}),
        ("chat.status_changed", {"dialog_id": "d1", "status": "in_progress"}),
        ("chat.message", message),
    )


def test_a_task_id_is_created_once() -> None:
    assert violation(customer(("task.created", TASK)), "task.created", TASK) == (
        "data.task_id: task 't1' already exists"
    )


@pytest.mark.parametrize(
    "event_type", ["task.edited", "task.completed", "task.reopened", "task.deleted"]
)
def test_a_task_must_exist(event_type: str) -> None:
    data = {"task_id": "t1", **(CHANGES if event_type == "task.edited" else {})}
    assert violation(customer(), event_type, data) == (
        "data.task_id: task 't1' does not exist for this customer"
    )


@pytest.mark.parametrize(
    ("done", "event_type", "needs"),
    [
        ([], "task.reopened", "completed"),
        (["task.completed"], "task.edited", "pending"),
        (["task.completed"], "task.completed", "pending"),
        (["task.deleted"], "task.deleted", "pending or completed"),
        (["task.deleted"], "task.reopened", "completed"),
    ],
)
def test_task_actions_follow_the_status(done: list[str], event_type: str, needs: str) -> None:
    c = customer(("task.created", TASK), *[(t, {"task_id": "t1"}) for t in done])
    status = {"task.completed": "completed", "task.deleted": "deleted"}.get(
        done[-1] if done else "", "pending"
    )
    data = {"task_id": "t1", **(CHANGES if event_type == "task.edited" else {})}
    assert violation(c, event_type, data) == (
        f"data.task_id: task 't1' is {status}; {event_type} needs it {needs}"
    )


@pytest.mark.parametrize(
    ("event_type", "right"),
    [("task.reopened", "tasks.reopen"), ("task.deleted", "tasks.delete")],
)
def test_a_user_needs_the_right_to_reopen_or_delete(event_type: str, right: str) -> None:
    c = customer(("task.created", TASK), ("task.completed", {"task_id": "t1"}))
    assert violation(c, event_type, {"task_id": "t1"}, EDITOR) == (
        f"actor.id: user 'u-1' lacks the right {right}"
    )
    # Rights bind users only: a system actor, or a user with the right, may.
    c.check(inbound(event_type, {"task_id": "t1"}, actor={"kind": "system", "id": "sync"}), EDITOR)
    c.check(inbound(event_type, {"task_id": "t1"}), ALLOW_ALL)


def test_editing_needs_its_right_and_completing_needs_none() -> None:
    c = customer(("task.created", TASK))
    nobody = RightsPolicy(users={})
    assert violation(c, "task.edited", {"task_id": "t1", **CHANGES}, nobody) == (
        "actor.id: user 'u-1' lacks the right tasks.edit"
    )
    c.check(inbound("task.edited", {"task_id": "t1", **CHANGES}), EDITOR)
    c.check(inbound("task.completed", {"task_id": "t1"}), nobody)


def test_a_visit_is_recorded_once() -> None:
    assert violation(customer(("visit.recorded", VISIT)), "visit.recorded", VISIT) == (
        "data.visit_id: visit 'v1' already exists"
    )


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("customer.card_changed", CHANGES),
        ("note.added", {"note_id": "n1", "text": "hi"}),
        (
            "call.logged",
            {"call_id": "k1", "direction": "inbound", "result": "missed", "duration_s": 0},
        ),
        ("file.attached", {"file_id": "f1", "name": "a.pdf", "size_bytes": 1}),
        ("sms.sent", SMS),
    ],
)
def test_types_without_a_rule_need_only_the_customer(event_type: str, data: dict[str, Any]) -> None:
    c = customer((event_type, data))
    # Not even a repeat of the same ids is refused.
    c.check(inbound(event_type, data), ALLOW_ALL)


def test_a_refused_event_changes_nothing() -> None:
    c = customer(("task.created", TASK))
    c.collect_events()
    with pytest.raises(RuleViolation):
        c.check(inbound("task.reopened", {"task_id": "t1"}), ALLOW_ALL)
    assert (c.version, c.tasks, c.collect_events()) == (2, {"t1": "pending"}, [])


def _case_types(method: Any) -> set[str]:
    """The payload classes named in the `case` patterns of `method`'s match."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
    return {
        node.cls.id
        for match in ast.walk(tree)
        if isinstance(match, ast.match_case)
        for node in ast.walk(match.pattern)
        if isinstance(node, ast.MatchClass) and isinstance(node.cls, ast.Name)
    }


def test_the_types_skipping_the_rules_and_the_state_are_those_no_case_names() -> None:
    """`check` and `apply` skip their match for types outside `_RULED` and
    `_STATEFUL`: a case for another type would never run."""
    from ledger.domain import _MERGE_EVENTS, _RULED, _STATEFUL, APPLIED_BY_SUBJECT

    ruled = {t.__name__ for t in _RULED}
    assert _case_types(Customer.check) | {t.__name__ for t in _MERGE_EVENTS} == ruled
    by_subject = {t.__name__ for t in APPLIED_BY_SUBJECT}
    assert _case_types(Customer.apply) == {t.__name__ for t in _STATEFUL} - by_subject


STREAM = customer_stream_id("c")


def test_a_type_applied_by_its_subject_changes_as_its_whole_event_would() -> None:
    """Loading a customer applies these from the subject column alone
    (`apply_subject`), the append from the whole payload (`apply`): the same."""
    from ledger.domain import APPLIED_BY_SUBJECT

    def state(c: Customer) -> dict[str, Any]:
        return {k: v for k, v in vars(c).items() if k != "_pending"}

    for model in APPLIED_BY_SUBJECT:
        assert model.subject_field is not None
        data = model.model_construct(**{model.subject_field: "id:with:colons"})
        # Each in a segment, so that leaving it changes the state too.
        before, whole, alone = (
            Customer(id=STREAM, customer_id="c", segments={"id:with:colons"}) for _ in range(3)
        )
        whole.apply(data)
        alone.apply_subject(model, "id:with:colons")
        assert state(alone) == state(whole), model
        assert state(whole) != state(before) or model.type_name == "segment.joined", model
    with pytest.raises(ValueError, match="not applied by its subject"):
        Customer(id=STREAM, customer_id="c").apply_subject(CustomerErased, "x")
