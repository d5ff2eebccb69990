"""`mailtriage doctor`: check the installation, one line per check."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mailtriage.cli.common import Subparsers, print_json
from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console

_MARK = {"ok": "[green]ok[/]  ", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "skip": "skip"}


def add_doctor_command(sub: Subparsers) -> None:
    p = sub.add_parser(
        "doctor",
        help="check config, database, storage, SMTP port, IMAP logins, relay, templates, "
        "clock; exit 1 if something is wrong",
    )
    p.add_argument("--json", action="store_true")
    # The doctor loads the config itself: a broken one is its first finding.
    p.set_defaults(func=cmd_doctor, loads_config=True)


def cmd_doctor(args: argparse.Namespace, settings: Settings | None, out: Console) -> int:
    from rich.markup import escape

    from mailtriage.ops.doctor import run_doctor

    report = run_doctor(args.config)
    if args.json:
        print_json(report.to_dict())
    else:
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            line = (
                f"{_MARK[check.status]} {escape(check.name.ljust(width))}  {escape(check.detail)}"
            )
            if check.hint and check.status in ("fail", "warn"):
                line += f" [dim]-> {escape(check.hint)}[/]"
            out.print(line, highlight=False, soft_wrap=True)
        fails = sum(c.status == "fail" for c in report.checks)
        warns = sum(c.status == "warn" for c in report.checks)
        if fails:
            summary = f"{fails} problem{'s' if fails > 1 else ''} found"
        elif warns:
            summary = f"no problems, {warns} warning{'s' if warns > 1 else ''}"
        else:
            summary = "all good"
        out.print(summary, highlight=False)
    return 0 if report.ok else 1
