"""Command line: wiring and printing only; one module per command group.

``main`` is the console script (``[project.scripts]``). Each command module registers
its subcommands; commands share :mod:`mailtriage.cli.common` (UserError, opening the
app, printing). A command imports what only it needs when it runs, so `--help`,
`classify` and `import` do not pay for each other's libraries.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from mailtriage import __version__
from mailtriage.cli.common import Command, LazyConsole, UserError
from mailtriage.cli.db import add_db_commands
from mailtriage.cli.doctor import add_doctor_command
from mailtriage.cli.intake import add_intake_commands
from mailtriage.cli.outbox import add_outbox_commands
from mailtriage.cli.quarantine import add_quarantine_commands
from mailtriage.cli.report import add_report_commands, add_ticket_link_command
from mailtriage.cli.retention import add_purge_command
from mailtriage.cli.sla import add_sla_commands
from mailtriage.cli.tickets import add_ticket_commands
from mailtriage.cli.triage import (
    add_classify_commands,
    add_ticket_triage_commands,
    add_train_command,
)

__all__ = ["UserError", "build_parser", "main", "run"]


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
    add_intake_commands(sub)  # import, run
    tickets = add_ticket_commands(sub)  # tickets list, show
    add_ticket_triage_commands(tickets)  # tickets set, reclassify
    add_ticket_link_command(tickets)  # tickets link
    add_train_command(sub)
    add_quarantine_commands(sub)
    add_classify_commands(sub)  # classify, eval
    add_outbox_commands(sub)
    add_db_commands(sub)
    add_report_commands(sub)  # report feedback
    add_doctor_command(sub)
    add_purge_command(sub)
    add_sla_commands(sub)  # sla show|recompute, scheduler tick
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions printed as one line with exit status 2."""
    from mailtriage.config import ConfigError
    from mailtriage.intake.files import SourceError
    from mailtriage.pipeline.classify import RulesError
    from mailtriage.store.db import DatabaseError
    from mailtriage.store.queries import NotFound

    return (UserError, ConfigError, DatabaseError, SourceError, NotFound, RulesError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mailtriage.config import load_settings
    from mailtriage.ops.logs import setup_logging, wants_json

    try:
        if getattr(args, "loads_config", False):  # doctor: a broken config is a finding
            setup_logging("DEBUG" if args.verbose else "WARNING")
            return int(args.func(args, None, LazyConsole()))
        settings = load_settings(args.config)
        setup_logging(
            "DEBUG" if args.verbose else settings.logging.level, wants_json(settings.logging)
        )
        func: Command = args.func
        return func(args, settings, LazyConsole())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if isinstance(exc, user_errors()):
            return _fail(str(exc))
        if _is_database_error(exc):
            return _fail(f"database error: {_first_line(exc)}")
        raise


def run() -> None:
    """The console script and ``python -m mailtriage``: main(), then exit with its status.

    Before the interpreter exits, everything is frozen for the garbage collector: its
    last collection would walk every object of the pipeline, SQLAlchemy and NumPy only
    to free memory the process hands back at once (0.1-0.2 s of a one-message import).
    Threads are still joined and atexit handlers run as usual. (Not in main(): tests
    call that many times in one process.)"""
    code = main()
    gc.freeze()
    sys.exit(code)


def _is_database_error(exc: BaseException) -> bool:
    """SQLAlchemy's OperationalError/DBAPIError or the write gate's timeout, without
    importing them for commands that never did (then the error cannot be one)."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    gate = sys.modules.get("mailtriage.store.write_gate")  # SQLite busy past its wait
    return (sa_exc is not None and isinstance(exc, sa_exc.DBAPIError)) or (
        gate is not None and isinstance(exc, gate.GateTimeout)
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fail(message: str) -> int:
    print(f"mailtriage: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    run()
