"""Command line: wiring and printing only."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from sqlalchemy.exc import DBAPIError, OperationalError

from mailtriage import __version__
from mailtriage.app import App
from mailtriage.config import ConfigError, Settings, load_settings
from mailtriage.intake.files import SourceError
from mailtriage.outbound.commands import add_outbound_commands
from mailtriage.pipeline.classify import Rules, RulesError, classify_file, load_rules
from mailtriage.pipeline.parse import ParseError
from mailtriage.store.db import DatabaseError
from mailtriage.store.queries import NotFound
from mailtriage.triage_commands import add_triage_commands

log = logging.getLogger("mailtriage")


class UserError(Exception):
    """Something the user can fix; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailtriage", description="Turn support email into classified tickets."
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config (default: $MAILTRIAGE_CONFIG)"
    )
    parser.add_argument("--version", action="version", version=f"mailtriage {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import", help="import .eml files, directories, mbox files, Maildirs")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("run", help="run the service (worker) until SIGTERM/SIGINT")
    p.set_defaults(func=cmd_run)

    tickets = sub.add_parser("tickets", help="list and show tickets").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = tickets.add_parser("list", help="list tickets, newest first")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_list)
    p = tickets.add_parser("show", help="one ticket with its articles and events")
    p.add_argument("number", help="DM-000123 or 123")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_show)
    add_triage_commands(sub, tickets)

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
    p.set_defaults(func=cmd_quarantine_retry)
    p = qsub.add_parser("export", help="write the raw bytes of a message to FILE")
    p.add_argument("id", type=int)
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_quarantine_export)

    p = sub.add_parser("classify", help="classify .eml files (no database needed)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=".eml files or directories")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="score the classifier on labelled directories")
    p.add_argument(
        "directories", nargs="+", type=Path, metavar="DIR", help="*.eml files and labels.jsonl"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    add_outbound_commands(sub)

    dbp = sub.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = dbp.add_parser("upgrade", help="apply pending migrations")
    p.set_defaults(func=cmd_db_upgrade)
    p = dbp.add_parser("current", help="print the schema revision")
    p.set_defaults(func=cmd_db_current)
    return parser


# -- commands -------------------------------------------------------------------------


def _open_app(settings: Settings, *, migrate: bool = True) -> App:
    app = App.from_settings(settings)
    if migrate:
        app.prepare_database()
    return app


def cmd_import(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.backfill import import_paths

    with _open_app(settings) as app:
        if out.is_terminal and not args.json:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
            ) as progress:
                read = progress.add_task("read", total=None)
                done = progress.add_task("processed", total=None)

                def on_read(n: int) -> None:
                    progress.advance(read, n)
                    progress.update(done, total=progress.tasks[read].completed)

                report = import_paths(
                    app,
                    args.paths,
                    on_read=on_read,
                    on_processed=lambda n: progress.advance(done, n),
                )
        else:
            report = import_paths(app, args.paths)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        out.print(" ".join(f"{k}={v}" for k, v in report.to_dict().items()))
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.service import run_service

    return run_service(settings)


def cmd_tickets_list(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.queries import list_tickets

    with _open_app(settings) as app, app.factory() as session:
        rows = list_tickets(
            session, settings.mail.ticket_prefix, status=args.status, limit=args.limit
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
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
        )
    out.print(table)
    return 0


def cmd_tickets_show(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.queries import show_ticket

    with _open_app(settings) as app, app.factory() as session:
        data = show_ticket(session, settings.mail.ticket_prefix, args.number)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return 0
    out.print(f"[bold]{data['number']}[/bold] {data['subject']}", markup=True, highlight=False)
    out.print(
        f"status {data['status']}  level {data['level']}  category {data['category']}  "
        f"priority {data['priority']}  language {data['language']}",
        highlight=False,
    )
    out.print(
        f"requester {data['requester']}  organisation {data['organisation']}", highlight=False
    )
    for reason in data["classification_reasons"]:
        out.print(f"  why: {reason}", highlight=False)
    for article in data["articles"]:
        out.rule(f"{article['direction']} {article['sender']} {article['date'] or ''}")
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


def cmd_quarantine_list(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.queries import list_quarantine

    with _open_app(settings) as app, app.factory() as session:
        rows = list_quarantine(session, args.limit)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
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

    with _open_app(settings) as app, app.factory() as session:
        data = show_inbound(session, args.id)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        for key, value in data.items():
            out.print(f"{key}: {value}", markup=False, highlight=False)
    return 0


def cmd_quarantine_retry(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.queries import get_inbound, show_inbound

    with _open_app(settings) as app:
        if not app.inbox.retry(args.id):
            with app.factory() as session:
                get_inbound(session, args.id)  # raises NotFound for an unknown id
            raise UserError(f"inbound message {args.id} is not quarantined")
        app.worker().drain()
        with app.factory() as session:
            data = show_inbound(session, args.id)
    out.print(
        f"{args.id}: {data['status']} {data['outcome'] or data['reason'] or ''}",
        markup=False,
        highlight=False,
    )
    return 0 if data["status"] == "done" else 1


def cmd_quarantine_export(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store.queries import get_inbound

    with _open_app(settings) as app, app.factory() as session:
        row = get_inbound(session, args.id)
        raw = app.blobs.get(row.raw_sha256)
    try:
        args.file.write_bytes(raw)
    except OSError as exc:
        raise UserError(f"{args.file}: cannot write: {exc.strerror}") from None
    out.print(f"wrote {len(raw)} bytes to {args.file}", markup=False, highlight=False)
    return 0


def _rules(settings: Settings) -> Rules:
    return load_rules(settings.triage.rules_file or None)


def _eml_files(paths: list[Path]) -> list[Path]:
    """Files as given; directories expanded to the .eml files below them."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*.eml")) if path.is_dir() else [path])
    return files


def cmd_classify(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.triage.model import configured_model

    rules, model = _rules(settings), configured_model(settings)
    table = Table("file", "level", "category", "priority", "lang", "conf", "why")
    failed = 0
    for path in _eml_files(args.paths):
        try:
            result: dict[str, object] = {"file": str(path)} | classify_file(
                path, rules, model
            ).to_dict()
        except (OSError, ParseError) as exc:
            failed += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            result = {"file": str(path), "error": reason}
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        elif "error" in result:
            table.add_row(str(path), "error", str(result["error"]), "", "", "", "")
        else:
            reasons = result.get("reasons")
            table.add_row(
                str(path),
                str(result["level"]),
                str(result["category"]),
                str(result["priority"]),
                str(result["language"]),
                f"{result['confidence']:.2f}",
                "; ".join(map(str, reasons if isinstance(reasons, list) else []))[:120],
            )
    if not args.json:
        out.print(table)
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.evaluation import eval_directory, render_eval
    from mailtriage.triage.model import configured_model, describe_model

    for directory in args.directories:
        if not (directory / "labels.jsonl").is_file():
            raise UserError(f"{directory}: no labels.jsonl (expected *.eml and labels.jsonl)")
    rules, model = _rules(settings), configured_model(settings)
    results = [eval_directory(d, rules, model) for d in args.directories]
    if args.json:
        used = {"rules": rules.source, "model": model.describe() if model else None}
        used["rules_model"] = rules.model.info if rules.model else None
        if len(results) == 1:
            print(json.dumps(results[0].to_dict() | used, ensure_ascii=False))
        else:
            each = {str(r.directory): r.to_dict() for r in results}
            print(json.dumps({"directories": each} | used, ensure_ascii=False))
    else:
        for result in results:
            render_eval(result, out, tables=len(results) == 1)
        combined = " + packaged linear model (rules/model.json)" if rules.model else ""
        out.print(f"rules {rules.source}{combined}", highlight=False, soft_wrap=True)
        out.print(f"model {describe_model(settings, model)}", highlight=False, soft_wrap=True)
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store import db

    with _open_app(settings, migrate=False) as app:
        db.upgrade(app.engine)
        out.print(f"database at revision {db.current_revision(app.engine)}", highlight=False)
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store import db

    with _open_app(settings, migrate=False) as app:
        out.print(
            f"{db.current_revision(app.engine) or 'empty'} "
            f"(code expects {db.head_revision(app.engine)})",
            highlight=False,
        )
    return 0


# -- entry point ----------------------------------------------------------------------

USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ConfigError,
    DatabaseError,
    SourceError,
    NotFound,
    RulesError,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mailtriage.ops.logs import setup_logging

    try:
        settings = load_settings(args.config)
        setup_logging("DEBUG" if args.verbose else settings.logging.level, settings.logging.json)
        func: Callable[[argparse.Namespace, Settings, Console], int] = args.func
        return func(args, settings, Console())
    except USER_ERRORS as exc:
        return _fail(str(exc))
    except (OperationalError, DBAPIError) as exc:
        return _fail(f"database error: {_first_line(exc)}")
    except KeyboardInterrupt:
        return 130


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fail(message: str) -> int:
    print(f"mailtriage: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
