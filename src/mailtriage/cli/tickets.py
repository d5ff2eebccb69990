"""`mailtriage tickets list|show` (`tickets set|reclassify` are in cli.triage)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from mailtriage.cli.common import Subparsers, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console


def add_ticket_commands(sub: Subparsers) -> Subparsers:
    """Add ``tickets list|show``; returns the ``tickets`` subparsers for more actions."""
    tickets = sub.add_parser("tickets", help="list and show tickets").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = tickets.add_parser("list", help="list tickets, newest first")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument(
        "--due", action="store_true", help="tickets with a running SLA target, due/breached first"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_list)
    p = tickets.add_parser("show", help="one ticket with its articles and events")
    p.add_argument("number", help="DM-000123 or 123")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_show)
    return tickets


def cmd_tickets_list(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from rich.table import Table

    from mailtriage.store.queries import list_tickets

    with open_app(settings) as app, app.factory() as session:
        rows = list_tickets(
            session,
            settings.mail.ticket_prefix,
            status=args.status,
            limit=args.limit,
            due=args.due,
        )
    if args.json:
        print_json(rows)
        return 0
    table = Table(
        "number",
        "status",
        "level",
        "category",
        "priority",
        "lang",
        "requester",
        "subject",
        "articles",
        "files",
        *(("due",) if args.due else ()),
    )
    for r in rows:
        table.add_row(
            r["number"],
            r["status"],
            r["level"] or "-",
            r["category"] or "-",
            r["priority"] or "-",
            r["language"] or "-",
            r["requester"] or "-",
            r["subject"][:60],
            str(r["article_count"]),
            str(r["attachment_count"]),
            *((r["sla_due_at"] or "-",) if args.due else ()),
        )
    out.print(table)
    return 0


def cmd_tickets_show(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from rich.text import Text

    from mailtriage.store.queries import show_ticket

    agent_names = {a.address.lower(): a.name for a in settings.agents}
    with open_app(settings) as app, app.factory() as session:
        data = show_ticket(session, settings.mail.ticket_prefix, args.number, agent_names)
    if args.json:
        print_json(data)
        return 0
    _print_head(data, out)
    for article in data["articles"]:
        out.rule(Text(article_heading(article)))  # Text: "[internal note]" is no markup
        out.print(article["text"], markup=False, highlight=False)
        for att in article["attachments"]:
            flags = " ".join(k for k in ("is_inline", "is_screenshot") if att[k])
            out.print(
                f"  [{att['content_type']}] {att['filename']} {att['size']} B {flags}",
                markup=False,
                highlight=False,
            )
    out.rule("events")
    for event in data["events"]:
        out.print(
            f"{event['created_at']} {event['kind']} {json.dumps(event['detail'])}",
            markup=False,
            highlight=False,
        )
    return 0


def _print_head(data: dict[str, Any], out: Console) -> None:
    def line(text: str) -> None:
        out.print(text, markup=False, highlight=False)

    out.print(f"[bold]{data['number']}[/bold] ", end="", markup=True, highlight=False)
    line(data["subject"])
    line(
        f"status {data['status']}  level {data['level']}  category {data['category']}  "
        f"priority {data['priority']}  language {data['language']}"
    )
    line(f"requester {data['requester']}  organisation {data['organisation']}")
    if data.get("assignee"):
        line(f"assignee {data['assignee']}")
    for p in data.get("participants", []):
        line(f"participant ({p['role']}) {p['name']} <{p['address']}>".replace("  ", " "))
    for link in data.get("links", []):
        line(f"linked to {link['ticket']}: {link['reason']}")
    if data.get("sla_due_at"):
        line(f"SLA: next target due {data['sla_due_at']} (mailtriage sla show {data['number']})")
    for event in data["events"]:
        if event["kind"] == "escalated":
            d = event["detail"]
            line(
                f"escalated {d.get('from', 'L1')} -> {d.get('to', 'L2')} {event['created_at']}: "
                f"{d.get('rule')}, {d.get('business_hours_elapsed')} business hours elapsed"
            )
    for reason in data["classification_reasons"]:
        line(f"  why: {reason}")


def article_heading(article: dict[str, Any]) -> str:
    """``in Erika <erika@...> date``, ``out Anna Agent date``, ``[internal note] ...``."""
    date = article["date"] or ""
    if article["direction"] == "in":
        who = article["sender"]
        return (
            f"in {article['sender_name']} <{who}> {date}"
            if article["sender_name"]
            else f"in {who} {date}"
        )
    author = article["author_name"] or article["author"] or article["sender_name"] or "system"
    if article["internal"]:
        label = (
            "[internal note]"
            if article["author"]
            else "[internal] mail to " + ", ".join(article["to"])
        )
        return f"{label} {author if article['author'] else ''} {date}".replace("  ", " ")
    return f"out {author} {date}"
