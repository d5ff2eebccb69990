"""The status flow of a ticket and who may move it (pure).

::

    new -> open -> waiting (for the customer) -> open (customer replied) -> resolved -> closed

Who may do what (``TRANSITIONS``):

* **agent** (a command or ``tickets set``): any forward move, ``waiting -> open``, and
  reopening a resolved ticket (``resolved -> open``). Nothing goes back to ``new``, and
  ``closed`` is final for everyone: later mail opens a new linked ticket.
* **customer** (their reply, see ``on_customer_reply``): ``waiting -> open`` and, within
  the reopen window, ``resolved -> open``. A customer never resolves or closes.
* **system**: ``resolved -> closed`` (auto-close after a while) and ``waiting -> closed``
  (the SLA auto-close: no answer from the customer after a reminder).

An agent's public reply moves a ticket to ``waiting`` (``on_agent_reply``).

A move to the status a ticket already has is no change and always allowed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = [
    "ACTORS",
    "NEW_TICKET",
    "STATUSES",
    "TRANSITIONS",
    "can_transition",
    "on_agent_reply",
    "on_customer_reply",
]

STATUSES: tuple[str, ...] = ("new", "open", "waiting", "resolved", "closed")
ACTORS: tuple[str, ...] = ("agent", "customer", "system")
NEW_TICKET = "new_ticket"

TRANSITIONS: dict[str, frozenset[tuple[str, str]]] = {
    "agent": frozenset(
        {
            ("new", "open"),
            ("new", "waiting"),
            ("new", "resolved"),
            ("new", "closed"),
            ("open", "waiting"),
            ("open", "resolved"),
            ("open", "closed"),
            ("waiting", "open"),
            ("waiting", "resolved"),
            ("waiting", "closed"),
            ("resolved", "open"),
            ("resolved", "closed"),
        }
    ),
    "customer": frozenset({("waiting", "open"), ("resolved", "open")}),
    "system": frozenset({("resolved", "closed"), ("waiting", "closed")}),
}


def can_transition(actor: str, status: str, target: str) -> tuple[bool, str]:
    """(allowed, reason) for ``actor`` moving a ticket from ``status`` to ``target``."""
    if actor not in TRANSITIONS:
        return False, f"unknown actor {actor!r}"
    for value in (status, target):
        if value not in STATUSES:
            return False, f"unknown status {value!r}"
    if status == target:
        return True, f"already {status}"
    if (status, target) in TRANSITIONS[actor]:
        return True, f"{actor}: {status} -> {target}"
    if status == "closed":
        return False, "closed is final: later mail opens a new linked ticket"
    return False, f"{actor} may not move a ticket from {status} to {target}"


def on_customer_reply(
    status: str, resolved_at: datetime | None, now: datetime, reopen_window: timedelta
) -> tuple[str, str]:
    """(the ticket's new status, or ``NEW_TICKET``; reason) when the requester or a
    participant replies.

    A resolved ticket reopens when the reply comes at most ``reopen_window`` after it
    was resolved; later, or on a closed ticket, the reply opens a new linked ticket.
    A resolved ticket without a resolve time is treated as outside the window.
    Times must be timezone-aware.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if now.tzinfo is None or (resolved_at is not None and resolved_at.tzinfo is None):
        raise ValueError("naive datetime: pass timezone-aware times")
    if status == "new":
        return "new", "customer added to a ticket nobody answered yet"
    if status == "open":
        return "open", "customer added to an open ticket"
    if status == "waiting":
        return "open", "customer replied"
    if status == "closed":
        return NEW_TICKET, "ticket is closed"
    if resolved_at is None:
        return NEW_TICKET, "resolved at an unknown time"
    age = now - resolved_at
    if age <= reopen_window:
        return (
            "open",
            f"customer replied {_days(age)} after resolve (window {_days(reopen_window)})",
        )
    return (
        NEW_TICKET,
        f"resolved {_days(age)} ago, past the reopen window of {_days(reopen_window)}",
    )


def on_agent_reply(status: str) -> tuple[str, str]:
    """(new status, reason) after an agent's public reply to the customer: the ticket
    waits for the customer, unless it is resolved or closed already."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if status in ("new", "open", "waiting"):
        return "waiting", "agent replied; waiting for the customer"
    return status, f"agent replied to a {status} ticket"


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{max(days, 0):.1f} days"
