"""`mailtriage db upgrade|current`: the database schema."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mailtriage.cli.common import Subparsers, open_app, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console


def add_db_commands(sub: Subparsers) -> None:
    dbp = sub.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = dbp.add_parser("upgrade", help="apply pending migrations")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_db_upgrade)
    p = dbp.add_parser("current", help="print the schema revision")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_db_current)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store import db

    with open_app(settings, migrate=False) as app:
        db.upgrade(app.engine)
        revision = db.current_revision(app.engine)
    if args.json:
        print_json({"revision": revision})
    else:
        out.print(f"database at revision {revision}", highlight=False)
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store import db

    with open_app(settings, migrate=False) as app:
        current, head = db.current_revision(app.engine), db.head_revision(app.engine)
    if args.json:
        print_json({"revision": current, "head": head, "at_head": current == head})
    else:
        out.print(f"{current or 'empty'} (code expects {head})", highlight=False)
    return 0
