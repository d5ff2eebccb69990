"""Mailing-list mail: list headers, Precedence: list, Mailman-style subject tags."""

from __future__ import annotations

import re

from mailtriage.pipeline.loops import patterns as p
from mailtriage.pipeline.loops.mail import Mail, pretty
from mailtriage.pipeline.mime import fold


def list_reasons(mail: Mail, own: set[str]) -> list[str]:
    reasons: list[str] = []
    for name in p.LIST_HEADERS:
        value = mail.get(name)
        if value is None:
            continue
        if own and name in ("list-id", "list-post") and _mentions_domain(value, own):
            continue  # our own intake alias is a group (e.g. support@ as a Google Group)
        reasons.append(f"header:{pretty(name)}")
    if mail.folded("precedence") == "list":
        reasons.append("header:Precedence=list")
    return reasons


def _mentions_domain(value: str, domains: set[str]) -> bool:
    folded = fold(value)
    return any(
        re.search(r"[.@]" + re.escape(domain) + r"(?:>|$|\s|\?)", folded) for domain in domains
    )


def list_subject_tag(mail: Mail, own: set[str]) -> str | None:
    """A Mailman-style "[name] subject" sent to the list address name@... (list headers
    stripped, e.g. by an archive)."""
    subject = p.REPLY_FWD_PREFIX.sub("", mail.subject).strip()
    match = re.match(r"^\[([a-z0-9][a-z0-9._-]{1,60})\]", subject)
    if not match or match.group(1).isdigit():
        return None
    tag = match.group(1)
    recipients = [
        addr.casefold().rpartition("@")
        for name in ("to", "cc")
        for addr in p.ADDR_RE.findall(mail.get(name) or "")
    ]
    if any(domain in own for _, _, domain in recipients):
        return None  # written to us directly, not received through the list
    if any(local == tag for local, _, _ in recipients):
        return "subject:list-tag"
    return None
