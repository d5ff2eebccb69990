"""`mailtriage report feedback`: what customers said about our help."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from mailtriage.cli.common import Subparsers, UserError, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console


def add_report_commands(sub: Subparsers) -> None:
    report = sub.add_parser("report", help="reports: customer feedback")
    rsub = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    p = rsub.add_parser(
        "feedback",
        help="ratings of resolved tickets: counts, average, comments per level and category",
    )
    p.add_argument(
        "--since", metavar="DATE", help="only feedback given on or after DATE (YYYY-MM-DD)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_report_feedback)


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        raise UserError(f"--since: expected a date like 2026-12-01, got {value!r}") from None


def cmd_report_feedback(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.portal import feedback_report

    since = _since(args.since)
    with open_app(settings) as app, app.factory() as session:
        report = feedback_report(session, settings.mail.ticket_prefix, since)
    if args.json:
        print_json(report)
        return 0
    _print(report, out)
    return 0


def _line(name: str, group: dict[str, Any]) -> str:
    average = f"{group['average']:.2f}" if group["average"] is not None else "-"
    spread = " ".join(f"{k}:{v}" for k, v in group["scores"].items())
    return f"{name:<20} {group['count']:>5}  avg {average:>4}  ({spread})"


def _print(report: dict[str, Any], out: Console) -> None:
    out.print(_line("all", report["total"]), highlight=False)
    for title, key in (("level", "by_level"), ("category", "by_category")):
        out.print(f"\nper {title}", highlight=False)
        for name, group in report[key].items():
            out.print(_line(name, group), highlight=False)
    comments = report["total"]["comments"]
    if comments:
        out.print("\ncomments", highlight=False)
        for c in comments:
            out.print(f"{c['ticket']}  {c['score']}  {c['comment']}", highlight=False, markup=False)


def add_ticket_link_command(tickets: Subparsers) -> None:
    """Add `tickets link` to the ``tickets`` subparsers."""
    p = tickets.add_parser(
        "link", help="the signed link to a ticket's page, for its requester or another viewer"
    )
    p.add_argument("number", help="DM-000123 or 123")
    p.add_argument(
        "--for",
        dest="address",
        metavar="ADDRESS",
        help="who opens it (default: the requester); must be on the ticket or allowed to "
        "see its organisation",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_link)


def cmd_tickets_link(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.portal.links import ticket_url
    from mailtriage.server_secret import load_secret
    from mailtriage.store.models import Ticket
    from mailtriage.store.portal import may_view, requester_of
    from mailtriage.store.queries import NotFound, parse_ticket_number, ticket_reference

    if not settings.portal.enabled:
        raise UserError("portal.enabled is false: there are no ticket pages")
    ticket_id = parse_ticket_number(args.number)
    reference = ticket_reference(settings.mail.ticket_prefix, ticket_id)
    with open_app(settings) as app, app.factory() as session:
        if session.get(Ticket, ticket_id) is None:
            raise NotFound(f"no ticket {reference}")
        address = (args.address or requester_of(session, ticket_id) or "").strip().lower()
        if not address:
            raise UserError(f"{reference} has no requester address; name one with --for")
        if not may_view(session, ticket_id, address, settings.portal.admins):
            raise UserError(
                f"{address} is not on {reference} (nor allowed to see its organisation)"
            )
    secret = load_secret(settings.security, settings.storage_dir)
    url = ticket_url(settings, secret, ticket_id, address, datetime.now(UTC))
    if args.json:
        print_json({"ticket": reference, "address": address, "url": url})
    else:
        print(url, flush=True)  # whole, on one line, whatever the terminal width
    return 0
