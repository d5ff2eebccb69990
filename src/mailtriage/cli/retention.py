"""`mailtriage purge`: retention of raw messages and attachments."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mailtriage.cli.common import Subparsers, UserError, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console


def add_purge_command(sub: Subparsers) -> None:
    p = sub.add_parser(
        "purge",
        help="delete raw messages and attachments of tickets closed longer than "
        "retention.purge_closed_after_days (tickets, text and events stay)",
    )
    p.add_argument("--dry-run", action="store_true", help="count, change nothing")
    p.add_argument(
        "--older-than-days",
        type=int,
        metavar="N",
        help="instead of retention.purge_closed_after_days",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_purge)


def cmd_purge(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.retention import purge_closed
    from mailtriage.store.models import utcnow

    days = args.older_than_days
    if days is None:
        days = settings.retention.purge_closed_after_days
    elif days < 1:
        raise UserError(f"--older-than-days: expected an integer >= 1, got {days}")
    if not days:
        message = "retention.purge_closed_after_days is 0: nothing is ever purged"
        if args.json:
            print_json({"dry_run": args.dry_run, "disabled": True, "tickets": []})
        else:
            out.print(message, highlight=False)
        return 0
    with open_app(settings) as app:
        report = purge_closed(
            app.factory,
            app.blobs,
            settings.mail.ticket_prefix,
            days,
            utcnow(),
            dry_run=args.dry_run,
        )
    if args.json:
        print_json(report.to_dict())
        return 0
    verb = "would purge" if args.dry_run else "purged"
    freed = "would free" if args.dry_run else "freed"
    out.print(
        f"{verb} {len(report.tickets)} tickets closed before {report.cutoff:%Y-%m-%d %H:%M} "
        f"UTC: {report.messages} raw messages, {report.attachments} attachments; "
        f"{freed} {report.blobs_deleted} files ({report.bytes_freed} bytes), "
        f"kept {report.blobs_shared} still used by other messages",
        highlight=False,
        soft_wrap=True,
    )
    if report.tickets:
        out.print(" ".join(report.tickets), highlight=False, soft_wrap=True)
    if report.skipped:
        out.print(
            f"left for later (mail still to send): {' '.join(report.skipped)}",
            highlight=False,
            soft_wrap=True,
        )
    return 0
