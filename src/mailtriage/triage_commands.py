"""Triage commands on tickets: corrections, reclassification, training (registered by
mailtriage.cli)."""

from __future__ import annotations

from typing import Any


def add_triage_commands(sub: Any, tickets: Any) -> None:
    """Add `tickets set`, `tickets reclassify` (to ``tickets``) and `train` (to ``sub``).

    Empty until the corrections and training land.
    """
