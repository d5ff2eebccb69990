"""The ticket status flow: who may move what, and what a customer's reply does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailtriage.pipeline.ticket_status import (
    NEW_TICKET,
    STATUSES,
    can_transition,
    on_agent_reply,
    on_customer_reply,
)

# Every pair that is allowed; anything not listed here must be refused.
ALLOWED = {
    "agent": {
        ("new", "open"),
        ("new", "waiting"),
        ("new", "resolved"),
        ("new", "closed"),
        ("open", "waiting"),
        ("open", "resolved"),
        ("open", "closed"),
        ("waiting", "open"),
        ("waiting", "resolved"),
        ("waiting", "closed"),
        ("resolved", "open"),
        ("resolved", "closed"),
    },
    "customer": {("waiting", "open"), ("resolved", "open")},
    "system": {("resolved", "closed"), ("waiting", "closed")},
}


@pytest.mark.parametrize("actor", sorted(ALLOWED))
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_transition_table(actor, status, target):
    allowed, reason = can_transition(actor, status, target)
    assert allowed is (status == target or (status, target) in ALLOWED[actor]), reason


@pytest.mark.parametrize(
    ("actor", "status", "target", "reason"),
    [
        ("customer", "open", "closed", "customer may not move a ticket from open to closed"),
        ("customer", "closed", "open", "closed is final"),
        ("agent", "closed", "open", "closed is final"),
        ("agent", "open", "new", "agent may not move a ticket from open to new"),
        ("stranger", "open", "closed", "unknown actor 'stranger'"),
        ("agent", "open", "done", "unknown status 'done'"),
        ("agent", "OPEN", "closed", "unknown status 'OPEN'"),
        ("agent", "open", "open", "already open"),
    ],
)
def test_reasons(actor, status, target, reason):
    assert can_transition(actor, status, target)[1].startswith(reason)


T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)


@pytest.mark.parametrize(
    ("status", "resolved_at", "now", "expected"),
    [
        ("new", None, T0, "new"),
        ("open", None, T0, "open"),
        ("waiting", None, T0, "open"),
        ("resolved", T0, T0 + timedelta(days=1), "open"),
        ("resolved", T0, T0 + WINDOW, "open"),  # the edge is inside
        ("resolved", T0, T0 + WINDOW + timedelta(seconds=1), NEW_TICKET),
        ("resolved", T0, T0 + timedelta(days=90), NEW_TICKET),
        ("resolved", T0, T0 - timedelta(minutes=5), "open"),  # clock skew
        ("resolved", None, T0, NEW_TICKET),
        ("closed", T0, T0 + timedelta(minutes=1), NEW_TICKET),
        ("closed", None, T0, NEW_TICKET),
    ],
)
def test_on_customer_reply(status, resolved_at, now, expected):
    new, reason = on_customer_reply(status, resolved_at, now, WINDOW)
    assert new == expected
    assert reason
    if new != NEW_TICKET:
        assert can_transition("customer", status, new)[0]


def test_window_compares_instants_across_time_zones():
    berlin = timezone(timedelta(hours=1))
    resolved = datetime(2026, 12, 1, 13, 0, tzinfo=berlin)  # 12:00 UTC
    assert on_customer_reply("resolved", resolved, T0 + WINDOW, WINDOW)[0] == "open"
    zero = timedelta(0)
    assert on_customer_reply("resolved", resolved, T0 + timedelta(seconds=1), zero)[0] == NEW_TICKET


def test_reopen_reason_names_the_window():
    _, reason = on_customer_reply("resolved", T0, T0 + timedelta(days=20), WINDOW)
    assert reason == "resolved 20.0 days ago, past the reopen window of 14.0 days"


@pytest.mark.parametrize(
    ("status", "resolved_at", "now"),
    [
        ("done", None, T0),
        ("open", None, datetime(2026, 12, 1)),
        ("resolved", datetime(2026, 12, 1), T0),
    ],
)
def test_on_customer_reply_refuses_bad_input(status, resolved_at, now):
    with pytest.raises(ValueError):
        on_customer_reply(status, resolved_at, now, WINDOW)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("new", "waiting"),
        ("open", "waiting"),
        ("waiting", "waiting"),
        ("resolved", "resolved"),
        ("closed", "closed"),
    ],
)
def test_on_agent_reply(status, expected):
    new, _ = on_agent_reply(status)
    assert new == expected
    assert can_transition("agent", status, new)[0]


def test_on_agent_reply_refuses_unknown_status():
    with pytest.raises(ValueError):
        on_agent_reply("archived")
