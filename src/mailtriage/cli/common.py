"""What every command module shares: the user error, opening the app, printing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mailtriage.config import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from mailtriage.app import App

# Every command: (parsed arguments, settings, console) -> exit status.
Command = Callable[[argparse.Namespace, Settings, "Console"], int]
# The subparsers object argparse's add_subparsers() returns.
Subparsers = Any


class UserError(Exception):
    """Something the user can fix; printed as one line, exit status 2."""


class LazyConsole:
    """rich's Console, made on first use: a command that prints JSON never needs it,
    and importing rich is a noticeable part of a start-up."""

    def __init__(self) -> None:
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console()
        return getattr(self._console, name)


def open_app(settings: Settings, *, migrate: bool = True) -> App:
    """The composition root for one command; applies pending migrations unless told not
    to (database.auto_migrate = false: insists the schema is current)."""
    from mailtriage.app import App  # only commands that need the database pay for it

    app = App.from_settings(settings)
    if migrate:
        app.prepare_database()
    return app


def print_json(data: object) -> None:
    """One JSON object on one line of standard output (flushed: a reader may be waiting)."""
    print(json.dumps(data, ensure_ascii=False), flush=True)
