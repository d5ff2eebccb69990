"""What the loop guard decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LoopKind = Literal["human", "auto_reply", "out_of_office", "bounce", "list", "own"]


@dataclass(frozen=True)
class LoopVerdict:
    """What :func:`detect_loop` decided, and why."""

    kind: LoopKind
    #: short names of the signals that decided, e.g. ``"header:Auto-Submitted=auto-replied"``
    reasons: tuple[str, ...]
    #: RFC 3464 ``Status`` of the first failed recipient, e.g. ``"5.1.1"``
    bounce_status: str | None = None
    #: for bounces: True for 5.x.x, False for 4.x.x (delay), None when unknown
    permanent: bool | None = None
    failed_recipients: tuple[str, ...] = ()
    #: Message-ID (without ``<>``) of the mail that bounced or was auto-answered
    original_message_id: str | None = None

    @property
    def automated(self) -> bool:
        return self.kind != "human"
