"""`mailtriage outbox ...` commands (registered by mailtriage.cli)."""

from __future__ import annotations

from typing import Any


def add_outbound_commands(sub: Any) -> None:
    """Add the outbound subcommands to the top-level subparsers ``sub``.

    Empty until the outbox exists; kept here so the outbound package owns its CLI.
    """
