"""The demo data makes sense to a manager reading it: distinct task titles,
named users, visit sources that fit their channels, actors that fit the
event, dialogues with a few messages, reachable phones and e-mails."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ledger.demo import DEMO_CUSTOMERS, demo_events

EVENTS = demo_events()

# Each source a visit may come from, and the channels it can be.
FITTING_CHANNELS = {
    "google": {"search", "ppc"},
    "newsletter": {"email"},
    "facebook.com": {"social", "ppc"},
    "(direct)": {"direct"},
}


def of_type(*types: str) -> list[dict[str, Any]]:
    return [e for e in EVENTS if e["type"] in types]


def test_task_titles_are_distinct_per_customer() -> None:
    titles: dict[str, list[str]] = defaultdict(list)
    for e in of_type("task.created"):
        titles[e["customer_id"]].append(e["data"]["title"])
    assert set(titles) == {c[0] for c in DEMO_CUSTOMERS}
    for customer, given in titles.items():
        assert len(given) == len(set(given)), (customer, given)


def test_users_have_names() -> None:
    users = [e["actor"] for e in EVENTS if e["actor"]["kind"] == "user"]
    assert users and all(a.get("name") and a["name"] != a["id"] for a in users)
    assert all("(" not in a["name"] for a in users)  # a person's name, not a role note


def test_visit_sources_fit_their_channels() -> None:
    visits = of_type("visit.recorded")
    assert visits
    for v in visits:
        source, channel = v["data"]["source"], v["data"]["channel"]
        if source in FITTING_CHANNELS:
            assert channel in FITTING_CHANNELS[source], (source, channel)
        else:  # another site: a referral
            assert channel == "referral", (source, channel)


def test_actors_fit_the_event() -> None:
    for e in of_type("email.delivered", "email.opened", "email.clicked", "email.bounced"):
        assert e["actor"]["kind"] == "integration"
        assert "analytics" not in e["actor"]["id"], e  # the mail gateway reports emails
        assert e["actor"]["id"] == "mail-gateway"
    for e in of_type("visit.recorded"):
        assert e["actor"]["id"] == "google-analytics"
    names = {c[0]: c[1] for c in DEMO_CUSTOMERS}
    for e in of_type("chat.message"):
        actor = e["actor"]
        if e["data"]["direction"] == "inbound":  # written by the customer
            assert actor["kind"] != "user" and "analytics" not in actor["id"]
            assert actor["name"] == names[e["customer_id"]], e
        else:
            assert actor["kind"] == "user"


def test_dialogues_have_a_few_messages_each() -> None:
    started = {e["data"]["dialog_id"] for e in of_type("chat.started")}
    messages = Counter(e["data"]["dialog_id"] for e in of_type("chat.message"))
    assert started and all(messages[d] >= 3 for d in started), messages
    for d in started:
        first = next(e for e in of_type("chat.message") if e["data"]["dialog_id"] == d)
        assert first["data"]["direction"] == "inbound"  # the customer writes first


def test_cards_carry_phones_and_emails_in_several_notations() -> None:
    phones: dict[str, str] = {}
    for e in of_type("customer.created"):
        card = e["data"]["card"]
        assert card.get("email") and card.get("phone")
        phones[e["customer_id"]] = card["phone"]
    for e in of_type("customer.card_changed"):
        for change in e["data"]["changes"]:
            if change["field"] == "phone":
                phones[e["customer_id"]] = change["new"]
    assert len(phones) == len(DEMO_CUSTOMERS)
    notations = {
        "international": any(p.startswith("+") and " " in p for p in phones.values()),
        "national": any(p.startswith("0") and not p.startswith("00") for p in phones.values()),
        "compact": any(p.startswith("+") and " " not in p for p in phones.values()),
        "00 prefix": any(p.startswith("00") for p in phones.values()),
    }
    assert all(notations.values()), notations
    emails = [e["data"]["card"]["email"] for e in of_type("customer.created")]
    assert any(m != m.lower() for m in emails)  # a search must ignore case
