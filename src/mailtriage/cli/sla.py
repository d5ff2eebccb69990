"""`mailtriage sla show|recompute` and `mailtriage scheduler tick`: wiring and printing."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mailtriage.cli.common import Subparsers, UserError, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console


def add_sla_commands(sub: Subparsers) -> None:
    sla = sub.add_parser("sla", help="SLA clocks of tickets").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = sla.add_parser("show", help="one ticket's clocks: due times, state, next action")
    p.add_argument("number", help="DM-000123 or 123")
    p.add_argument("--now", type=_iso, default=None, help="evaluate at this time (ISO 8601)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sla_show)
    p = sla.add_parser(
        "recompute", help="recompute stored due times (after changing [sla] or upgrading)"
    )
    p.add_argument("numbers", nargs="*", metavar="NUMBER")
    p.add_argument("--all", action="store_true", help="every ticket that is not closed")
    p.add_argument("--now", type=_iso, default=None, help="as of this time (ISO 8601)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sla_recompute)
    sched = sub.add_parser("scheduler", help="the periodic jobs of `mailtriage run`")
    ssub = sched.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ssub.add_parser(
        "tick", help="run every job once: the SLA jobs, then the outbox (for cron and tests)"
    )
    p.add_argument(
        "--now",
        type=_iso,
        default=None,
        help="the SLA jobs' clock (ISO 8601 with offset; default: now)",
    )
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=cmd_scheduler_tick)


def _iso(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {value!r} (e.g. 2026-11-09T08:30:00+01:00)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _iso_or_none(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def sla_report(session: Any, settings: Settings, number: str, now: datetime) -> dict[str, Any]:
    from sqlalchemy import select

    from mailtriage.sla import evaluate
    from mailtriage.sla.settings import rules_from_settings
    from mailtriage.store.models import Event, Ticket
    from mailtriage.store.queries import NotFound, parse_ticket_number, ticket_reference
    from mailtriage.store.sla_store import ticket_facts

    prefix = settings.mail.ticket_prefix
    ticket_id = parse_ticket_number(number)
    facts = ticket_facts(session, ticket_id)
    ticket = session.get(Ticket, ticket_id)
    if facts is None or ticket is None:
        raise NotFound(f"no ticket {ticket_reference(prefix, ticket_id)}")
    ev = evaluate(facts, rules_from_settings(settings.sla), now)
    escalations = [
        {"at": e.created_at.isoformat(), **(e.detail or {})}
        for e in session.scalars(
            select(Event).where(Event.ticket_id == ticket_id, Event.kind == "escalated")
        )
    ]
    return {
        "number": ticket_reference(prefix, ticket_id),
        "status": ticket.status,
        "level": ticket.level,
        "priority": ticket.priority,
        "policy": ev.policy.name,
        "business_time": ev.policy.business,
        "level_set_by_agent": ev.level_locked,
        "now": now.isoformat(),
        "clocks": [c.to_dict(now) for c in ev.clocks],
        "due_now": [a.kind + (f" {a.clock}" if a.clock else "") for a in ev.due],
        "next_action_at": _iso_or_none(ev.next_at),
        "stored": {
            "first_response_due": _iso_or_none(ticket.sla_first_response_due),
            "next_update_due": _iso_or_none(ticket.sla_next_update_due),
            "solution_due": _iso_or_none(ticket.sla_solution_due),
            "escalation_due": _iso_or_none(ticket.sla_escalation_due),
            "due_at": _iso_or_none(ticket.sla_due_at),
            "next_at": _iso_or_none(ticket.sla_next_at),
        },
        "escalations": escalations,
    }


def cmd_sla_show(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    now = args.now or datetime.now(UTC)
    with open_app(settings) as app, app.factory() as session:
        data = sla_report(session, settings, args.number, now)
    if args.json:
        print_json(data)
        return 0

    def line(text: str) -> None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    line(
        f"{data['number']}  status {data['status']}  level {data['level']}  "
        f"priority {data['priority']}  policy {data['policy']} "
        f"({'business' if data['business_time'] else 'calendar'} time)"
    )
    if data["level_set_by_agent"]:
        line("level set by an agent: never escalated by a rule")
    for c in data["clocks"]:
        cycle = f" #{c['cycle']}" if c["cycle"] else ""
        met = f" met {c['met_at']}" if c["met_at"] else ""
        line(
            f"  {c['clock']}{cycle}: {c['state']}, {c['target_hours']:g} h from {c['start']}, "
            f"due {c['due'] or '-'}{met}"
        )
    if not data["clocks"]:
        line("  no clocks running")
    for e in data["escalations"]:
        line(f"escalated {e['at']}: {e.get('rule')} ({e.get('business_hours_elapsed')} h)")
    line(f"next action: {data['next_action_at'] or '-'}")
    if data["due_now"]:
        line("due now: " + ", ".join(data["due_now"]))
    return 0


def cmd_sla_recompute(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from sqlalchemy import select

    from mailtriage.sla.settings import rules_from_settings
    from mailtriage.store.models import Ticket
    from mailtriage.store.queries import parse_ticket_number
    from mailtriage.store.sla_store import refresh_sla

    if not args.all and not args.numbers:
        raise UserError("give ticket numbers or --all")
    rules = rules_from_settings(settings.sla)
    ids = [parse_ticket_number(n) for n in args.numbers]
    done = 0
    with open_app(settings) as app:
        if args.all:
            with app.factory() as session:
                ids = list(
                    session.scalars(
                        select(Ticket.id).where(Ticket.status.not_in(("closed", "merged")))
                    )
                )
        for start in range(0, len(ids), 500):
            with app.factory() as session, session.begin():
                for ticket_id in ids[start : start + 500]:
                    if refresh_sla(session, ticket_id, rules, args.now) is not None:
                        done += 1
    if args.json:
        print_json({"recomputed": done})
    else:
        out.print(f"recomputed {done} ticket(s)", highlight=False)
    return 0


def cmd_scheduler_tick(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.config import ConfigError
    from mailtriage.outbound.ack import outbound_policy
    from mailtriage.outbound.render import RenderError
    from mailtriage.outbound.sender import Sender
    from mailtriage.runners.sla_jobs import run_sla_jobs

    policy = outbound_policy(settings)  # a broken KB index or template dir: one line
    with open_app(settings) as app:
        counts = dict(run_sla_jobs(app.factory, settings, args.now, policy))
        sent: dict[str, int] = {}
        if settings.outbound.sender_enabled:
            try:
                sender = Sender(app.factory, settings)
            except RenderError as exc:
                raise ConfigError(str(exc)) from None
            sent = sender.flush().to_dict()
    if args.json:
        print_json({"sla": counts, "outbox": sent})
    else:
        sla = " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing due"
        mail = " ".join(f"{k}={v}" for k, v in sent.items() if v) or "nothing to send"
        out.print(f"sla: {sla}; outbox: {mail}", highlight=False, markup=False)
    return 0
