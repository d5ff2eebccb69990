"""`mailtriage db upgrade|current`: the database schema."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mailtriage.cli.common import Subparsers, open_app
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console


def add_db_commands(sub: Subparsers) -> None:
    dbp = sub.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = dbp.add_parser("upgrade", help="apply pending migrations")
    p.set_defaults(func=cmd_db_upgrade)
    p = dbp.add_parser("current", help="print the schema revision")
    p.set_defaults(func=cmd_db_current)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store import db

    with open_app(settings, migrate=False) as app:
        db.upgrade(app.engine)
        out.print(f"database at revision {db.current_revision(app.engine)}", highlight=False)
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings, out: Console) -> int:
    from mailtriage.store import db

    with open_app(settings, migrate=False) as app:
        out.print(
            f"{db.current_revision(app.engine) or 'empty'} "
            f"(code expects {db.head_revision(app.engine)})",
            highlight=False,
        )
    return 0
