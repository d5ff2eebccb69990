"""`mailtriage quarantine list|show|retry|export`: messages that could not be processed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mailtriage.cli.common import Subparsers, UserError, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console


def add_quarantine_commands(sub: Subparsers) -> None:
    quarantine = sub.add_parser("quarantine", help="messages that could not be processed")
    qsub = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = qsub.add_parser("list")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine_list)
    p = qsub.add_parser("show")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine_show)
    p = qsub.add_parser("retry", help="process a quarantined message again")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine_retry)
    p = qsub.add_parser("export", help="write the raw bytes of a message to FILE")
    p.add_argument("id", type=int)
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine_export)


def cmd_quarantine_list(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from rich.table import Table

    from mailtriage.store.queries import list_quarantine

    with open_app(settings) as app, app.factory() as session:
        rows = list_quarantine(session, args.limit)
    if args.json:
        print_json(rows)
        return 0
    table = Table("id", "received", "stage", "reason", "source")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["received_at"][:19],
            r["stage"] or "",
            (r["reason"] or "")[:70],
            r["source"],
        )
    out.print(table)
    return 0


def cmd_quarantine_show(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.queries import show_inbound

    with open_app(settings) as app, app.factory() as session:
        data = show_inbound(session, args.id)
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            out.print(f"{key}: {value}", markup=False, highlight=False)
    return 0


def cmd_quarantine_retry(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.queries import get_inbound, show_inbound

    with open_app(settings) as app:
        if not app.inbox.retry(args.id):
            with app.factory() as session:
                get_inbound(session, args.id)  # raises NotFound for an unknown id
            raise UserError(f"inbound message {args.id} is not quarantined")
        app.worker().drain()
        with app.factory() as session:
            data = show_inbound(session, args.id)
    if args.json:
        print_json({k: data[k] for k in ("id", "status", "outcome", "stage", "reason")})
        return 0 if data["status"] == "done" else 1
    out.print(
        f"{args.id}: {data['status']} {data['outcome'] or data['reason'] or ''}",
        markup=False,
        highlight=False,
    )
    return 0 if data["status"] == "done" else 1


def cmd_quarantine_export(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.queries import get_inbound

    with open_app(settings) as app, app.factory() as session:
        row = get_inbound(session, args.id)
        if row.purged_at is not None:
            raise UserError(f"inbound message {args.id}: its raw bytes were purged (retention)")
        raw = app.inbox.raw(row)
    try:
        args.file.write_bytes(raw)
    except OSError as exc:
        raise UserError(f"{args.file}: cannot write: {exc.strerror}") from None
    if args.json:
        print_json({"id": args.id, "file": str(args.file), "bytes": len(raw)})
        return 0
    out.print(f"wrote {len(raw)} bytes to {args.file}", markup=False, highlight=False)
    return 0
