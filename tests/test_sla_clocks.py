"""A ticket's clocks from its history (pure): what is due when, and only once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from mailtriage.sla import BusinessCalendar, EventFact, Policy, SlaRules, TicketFacts, evaluate

BERLIN = ZoneInfo("Europe/Berlin")
RULES = SlaRules(
    calendar=BusinessCalendar(country="DE", subdiv="BY"),
    policies=(Policy(name="fast", priorities=("high", "urgent"), escalate_after_days=1),),
    fallback=Policy(first_response_hours=8, solution_hours=40),
)
CREATED = datetime(2026, 11, 2, 9, 0, tzinfo=BERLIN)  # Monday


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=BERLIN)


def facts(**kw: object) -> TicketFacts:
    base: dict[str, object] = {"created_at": CREATED, "status": "new", "level": "L1"}
    return TicketFacts(**(base | kw))  # type: ignore[arg-type]


def kinds(ev: object, kind: str = "") -> list[tuple[str, str]]:
    return [(a.kind, a.clock) for a in ev.due if kind in ("", a.kind)]  # type: ignore[attr-defined]


def test_warnings_then_breach_of_the_first_response() -> None:
    f = facts()
    ev = evaluate(f, RULES, at(2, 12))
    assert kinds(ev) == []
    assert ev.clock("first_response").due == at(2, 17)  # type: ignore[union-attr]
    assert ev.next_at == at(2, 13)  # 50 % of 8 h
    assert kinds(evaluate(f, RULES, at(2, 13))) == [("sla_warning", "first_response")]
    assert kinds(evaluate(f, RULES, at(2, 16))) == [
        ("sla_warning", "first_response"),
        ("sla_warning", "first_response"),
    ]
    # after the breach only the breach is due (warnings are overtaken)
    assert kinds(evaluate(f, RULES, at(2, 17))) == [("sla_breach", "first_response")]
    warned = EventFact("sla_warning", at(2, 13), detail={"clock": "first_response", "index": 0})
    ev = evaluate(facts(events=(warned,)), RULES, at(2, 13, 30))
    assert kinds(ev) == [] and ev.next_at == at(2, 15, 24)  # 80 % of 8 h


def test_an_answer_in_time_stops_the_clock() -> None:
    ev = evaluate(facts(first_response_at=at(2, 10)), RULES, at(9, 12))
    assert ev.clock("first_response").state(at(9, 12)) == "met"  # type: ignore[union-attr]
    assert "sla_breach" not in [a.kind for a in ev.due if a.clock == "first_response"]


def test_waiting_pauses_and_the_next_update_clock() -> None:
    events = (
        EventFact("status_changed", at(2, 10), detail={"from": "new", "to": "waiting"}),
        EventFact("status_changed", at(4, 10), detail={"from": "waiting", "to": "open"}),
    )
    f = facts(
        status="open",
        first_response_at=at(2, 10),
        agent_replies=(at(2, 10),),
        customer_replies=(at(4, 10),),
        events=events,
    )
    ev = evaluate(f, RULES, at(4, 11))
    update = ev.clock("next_update")
    assert update is not None and update.cycle == 1
    # 24 business hours from Wednesday 10:00: Wed 8 h, Thu 10 h, Fri 6 h -> Fri 14:00
    assert update.due == at(6, 14)
    # the solution clock (40 h) stood still while waiting: 1 h Monday, 39 h from Wed 10:00
    solution = ev.clock("solution")
    assert solution is not None and solution.due == at(10, 9)


def test_escalation_once_and_never_over_an_agents_level() -> None:
    f = facts()
    ev = evaluate(f, RULES, at(4, 9))  # two business days (20 h) after Monday 09:00
    assert kinds(ev, "escalated") == [("escalated", "")]
    assert kinds(evaluate(f, RULES, at(4, 8, 59)), "escalated") == []
    escalation = next(a for a in ev.due if a.kind == "escalated")
    assert escalation.detail["business_hours_elapsed"] == 20
    done = EventFact("escalated", at(4, 9))
    assert kinds(evaluate(facts(events=(done,)), RULES, at(4, 10)), "escalated") == []
    set_by_agent = EventFact(
        "corrected", at(2, 10), "anna@dataandmore.com", {"set": ["level"], "changed": []}
    )
    ev = evaluate(facts(events=(set_by_agent,)), RULES, at(9, 9))
    assert ev.level_locked and ev.clock("escalation") is None
    urgent = evaluate(facts(priority="urgent"), RULES, at(3, 9))
    assert kinds(urgent, "escalated") == [("escalated", "")]  # one business day for high and urgent


def test_reminder_then_auto_close_while_waiting() -> None:
    waiting = EventFact("status_changed", at(2, 10), detail={"from": "open", "to": "waiting"})
    f = facts(status="waiting", first_response_at=at(2, 10), events=(waiting,))
    assert kinds(evaluate(f, RULES, at(5, 9))) == []
    ev = evaluate(f, RULES, at(5, 10))  # three calendar days
    assert [a.kind for a in ev.due] == ["reminder_sent"]
    # no auto-close before the reminder went out, however late
    assert [a.kind for a in evaluate(f, RULES, at(30, 10)).due] == ["reminder_sent"]
    reminded = EventFact("reminder_sent", at(5, 10), detail={"cycle": ev.due[0].cycle})
    f2 = facts(status="waiting", first_response_at=at(2, 10), events=(waiting, reminded))
    assert evaluate(f2, RULES, at(9, 9)).due == ()
    assert [a.kind for a in evaluate(f2, RULES, at(9, 10)).due] == ["auto_closed"]
    assert evaluate(f2, RULES, at(9, 9)).next_at == at(9, 10)


def test_closed_tickets_have_no_clocks() -> None:
    ev = evaluate(facts(status="closed"), RULES, at(30, 10))
    assert ev.clocks == () and ev.next_at is None and ev.due == ()


def test_policy_by_organisation_wins() -> None:
    rules = SlaRules(
        policies=(
            Policy(name="any-high", priorities=("high",)),
            Policy(name="acme", domains=("acme.example",), first_response_hours=4),
        )
    )
    assert rules.policy_for("high", "acme.example").name == "acme"
    assert rules.policy_for("high", "other.example").name == "any-high"
    assert rules.policy_for("low", None).name == "default"
    assert timedelta(hours=4) == rules.policy_for(None, "ACME.example".lower()).target(
        "first_response"
    )
    assert datetime(2026, 1, 1, tzinfo=UTC)  # keep UTC imported for readers


def test_sla_config_builds_the_rules_and_names_bad_keys() -> None:
    import pytest

    from mailtriage.config import ConfigError, settings_from_dict
    from mailtriage.sla.settings import rules_from_settings

    settings = settings_from_dict(
        {
            "sla": {
                "response_hours": 8,
                "extra_holidays": ["2026-12-24"],
                "working_hours": {"friday": "08:00-12:00"},
                "policies": [{"name": "acme", "domains": ["ACME.example"], "business_time": False}],
            }
        }
    )
    rules = rules_from_settings(settings.sla)
    acme = rules.policy_for("normal", "acme.example")
    assert (acme.name, acme.business, acme.first_response_hours) == ("acme", False, 8.0)
    assert rules.policy_for("urgent", None).escalate_after_days == 2  # the list was replaced
    assert rules.calendar.is_holiday(datetime(2026, 12, 24).date())
    assert rules.calendar.is_holiday(datetime(2026, 1, 6).date())  # Epiphany in Bavaria
    default = rules_from_settings(settings_from_dict({}).sla)
    assert default.policy_for("high", None).escalate_after_days == 1
    assert default.policy_for("normal", None).escalate_after_days == 2
    for data, key in [
        ({"warn_at": [0.5, 1.2]}, "sla.warn_at"),
        ({"timezone": "Mars/Olympus"}, "sla.timezone"),
        ({"working_hours": {"monday": "18:00-08:00"}}, "sla.working_hours.monday"),
        ({"holidays_country": "XX"}, "sla.holidays_country"),
        ({"holidays_subdiv": "ZZ"}, "sla.holidays_subdiv"),
        ({"extra_holidays": ["24.12.2026"]}, "sla.extra_holidays[0]"),
        ({"team_lead_address": "lead"}, "sla.team_lead_address"),
        ({"policies": [{"name": "x", "priorities": ["hot"]}]}, "sla.policies[0].priorities[0]"),
        ({"policies": [{"priorities": ["high"]}]}, "sla.policies[0].name"),
        ({"policies": [{"name": "x", "reminder_days": -1}]}, "sla.policies[0].reminder_days"),
    ]:
        with pytest.raises(ConfigError, match=rf"^{key.replace('[', '.').replace(']', '.')}: "):
            settings_from_dict({"sla": data})


def test_the_acknowledgement_promises_the_first_response_due_time() -> None:
    from mailtriage.outbound.ack import Customer, OutboundPolicy, plan_ack

    friday = datetime(2026, 5, 22, 15, 0, tzinfo=BERLIN)  # Whit Monday follows
    promise = RULES.first_response(friday, "normal", None)
    assert promise == (datetime(2026, 5, 26, 13, 0, tzinfo=BERLIN), 8.0, True)
    plan, _ = plan_ack(
        OutboundPolicy(),
        ticket_id=7,
        created_at=friday,
        customer=Customer(address="erika@kunde.example"),
        category=None,
        language="de",
        promise=promise,
    )
    assert plan is not None
    context = plan.context.to_json()
    assert context["due_at"] == "2026-05-26T11:00:00+00:00" and context["business_hours"]
    assert context["response_hours"] == 8.0
    calendar_time = SlaRules(fallback=Policy(business=False))
    assert calendar_time.first_response(friday, None, None) == (
        datetime(2026, 5, 23, 15, 0, tzinfo=BERLIN),
        24.0,
        False,
    )
    assert (
        SlaRules(fallback=Policy(first_response_hours=0)).first_response(friday, None, None) is None
    )
