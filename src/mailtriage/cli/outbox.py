"""`mailtriage outbox send|list|show|retry`: wiring and printing."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mailtriage.cli.common import Subparsers, UserError, open_app, print_json
from mailtriage.config import ConfigError, Settings

if TYPE_CHECKING:
    from rich.console import Console

    from mailtriage.app import App
    from mailtriage.store.outbound_models import Outbox


# OutboxStatus.ALL, spelled out so that building the parser does not import SQLAlchemy
# (tests/test_cli.py checks that the two agree).
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "skipped")


def add_outbox_commands(sub: Subparsers) -> None:
    """Add ``outbox send|list|show|retry`` to the top-level subparsers ``sub``."""
    outbox = sub.add_parser(
        "outbox", help="mail we send: acknowledgements, agent notices, relayed replies"
    )
    osub = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = osub.add_parser(
        "send", help="send every due mail once (for cron and tests); exit 1 if one failed"
    )
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=cmd_outbox_send)
    p = osub.add_parser("list", help="outgoing mail, newest first")
    p.add_argument("--status", choices=OUTBOX_STATUSES)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_outbox_list)
    p = osub.add_parser("show", help="one outgoing mail: its state and the message")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--raw", action="store_true", help="print the message as it is sent")
    p.set_defaults(func=cmd_outbox_show)
    p = osub.add_parser("retry", help="send a failed or skipped mail again")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_outbox_retry)


def _sender(app: App) -> Any:
    from mailtriage.outbound.ack import outbound_policy
    from mailtriage.outbound.render import RenderError
    from mailtriage.outbound.sender import Sender

    outbound_policy(app.settings)  # a broken KB index or template dir: one-line error
    try:
        return Sender(app.factory, app.settings)
    except RenderError as exc:
        raise ConfigError(str(exc)) from None


def cmd_outbox_send(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    with open_app(settings) as app:
        sender = _sender(app)
        try:
            report = sender.flush()
        finally:
            sender.release()
    if args.json:
        print_json(report.to_dict())
    else:
        out.print(" ".join(f"{k}={v}" for k, v in report.to_dict().items()), highlight=False)
    return 1 if report.failed else 0


def cmd_outbox_list(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from rich.table import Table

    from mailtriage.outbound.outbox import list_outbox

    with open_app(settings) as app, app.factory() as session:
        rows = list_outbox(
            session, settings.mail.ticket_prefix, status=args.status, limit=args.limit
        )
    if args.json:
        print_json(rows)
        return 0
    table = Table("id", "ticket", "kind", "status", "to", "lang", "tries", "when", "error")
    for r in rows:
        when = r["sent_at"] or r["next_attempt_at"]
        table.add_row(
            str(r["id"]),
            r["ticket"],
            f"{r['kind']}/{r['step']}",
            r["status"],
            r["to"],
            r["language"],
            str(r["attempts"]),
            when[:19],
            (r["last_error"] or "")[:60],
        )
    out.print(table)
    return 0


def _get(app: App, outbox_id: int) -> Outbox:
    from sqlalchemy import select

    from mailtriage.store.outbound_models import Outbox
    from mailtriage.store.queries import NotFound

    with app.factory() as session:
        row = session.scalar(select(Outbox).where(Outbox.id == outbox_id))
    if row is None:
        raise NotFound(f"no outbox entry {outbox_id}")
    return row


def cmd_outbox_show(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.outbound.outbox import OutboxJob, outbox_summary

    with open_app(settings) as app:
        row = _get(app, args.id)
        data = outbox_summary(row, settings.mail.ticket_prefix) | {"context": row.context}
        job = OutboxJob(
            row.id,
            row.ticket_id,
            row.kind,
            row.step,
            row.message_id,
            row.recipient,
            row.language,
            dict(row.context),
            row.attempts,
            row.deadline,
            row.created_at,
        )
        try:
            message, _ = _sender(app).render(job)
            raw = message.decode("utf-8", "replace")
        except Exception as exc:  # shown, not raised: this is how ops find a broken template
            raw = ""
            data["render_error"] = f"{type(exc).__name__}: {exc}"
    if args.raw:
        if not raw:
            out.print(f"cannot render: {data['render_error']}", markup=False, highlight=False)
            return 1
        print(raw.replace("\r\n", "\n"), end="")
        return 0
    if args.json:
        print_json(data | {"message": raw})
        return 0
    for key, value in data.items():
        if key != "context":
            out.print(f"{key}: {value}", markup=False, highlight=False)
    out.rule("message")
    out.print(raw.replace("\r\n", "\n") or "(cannot render)", markup=False, highlight=False)
    return 0


def cmd_outbox_retry(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.outbound.outbox import OutboxStore
    from mailtriage.store.models import utcnow

    with open_app(settings) as app:
        row = _get(app, args.id)
        deadline = utcnow() + timedelta(hours=settings.outbound.give_up_after_hours)
        if not OutboxStore(app.factory).retry(args.id, deadline):
            raise UserError(
                f"outbox entry {args.id} is {row.status}; only failed or skipped mail is retried"
            )
    if args.json:
        print_json({"id": args.id, "status": "pending"})
        return 0
    out.print(
        f"{args.id}: pending again (sent by `mailtriage run` or `mailtriage outbox send`)",
        markup=False,
        highlight=False,
    )
    return 0
