"""`mailtriage tickets list|show` (`tickets set|reclassify` are in cli.triage)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from mailtriage.cli.common import Subparsers, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


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
    out.print(ticket_table(rows, out.width, due=args.due))
    return 0


# tickets list: (header, row key); the first four and the subject are always shown, the
# others only while the subject keeps SUBJECT_MIN columns, in this order.
_ALWAYS = (("number", "number"), ("status", "status"), ("level", "level"), ("prio", "priority"))
_OPTIONAL = (
    ("category", "category"),
    ("requester", "requester"),
    ("lang", "language"),
    ("art", "article_count"),
    ("files", "attachment_count"),
)
SUBJECT_MIN = 30
REQUESTER_MAX = 24
_GAP = 2  # columns between two columns (padding 0,1 and no box)


def ticket_table(rows: list[dict[str, Any]], width: int, due: bool = False) -> Table:
    """The ticket list fitted to ``width`` columns: the reference is never cut, the
    subject gets what is left (cut with an ellipsis), and the optional columns are
    left out, last first, when they would squeeze the subject below SUBJECT_MIN.
    ``due``: a column with the next SLA due time (``tickets list --due``)."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return "-" if value is None or value == "" else " ".join(str(value).split())

    def natural(header: str, key: str) -> int:
        widest = max((cell_len(cell(r, key)) for r in rows), default=0)
        limit = REQUESTER_MAX if key == "requester" else widest
        return max(cell_len(header), min(widest, limit))

    if due:  # `--due`: when the next SLA target falls due (UTC, to the minute)
        rows = [r | {"due": (r.get("sla_due_at") or "")[:16].replace("T", " ")} for r in rows]
    columns = [(h, k, natural(h, k)) for h, k in (*_ALWAYS, *((("due", "due"),) if due else ()))]
    used = sum(w for _, _, w in columns) + _GAP * len(columns)
    for header, key in _OPTIONAL:
        w = natural(header, key)
        if width - (used + w + _GAP) >= SUBJECT_MIN:
            columns.append((header, key, w))
            used += w + _GAP
    subject_width = max(
        len("subject"),
        min(width - used, max((cell_len(cell(r, "subject")) for r in rows), default=0)),
    )
    columns.append(("subject", "subject", subject_width))
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    for header, key, w in columns:
        table.add_column(
            header,
            width=w,
            no_wrap=True,
            overflow="ellipsis",
            justify="right" if key.endswith("_count") else "left",
        )
    for r in rows:
        table.add_row(*(Text(cell(r, key)) for _, key, _ in columns))
    return table


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
