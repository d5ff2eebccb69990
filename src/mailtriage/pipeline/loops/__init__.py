"""Mail-loop guard: decide whether an inbound message was written by a human.

The ingest pipeline turns human mail into tickets.  Everything automated (bounces and
delivery-status notifications, out-of-office and other auto-replies, read receipts,
mailing-list traffic, our own mail coming back) is stored, marked ignored with the reasons
given here and never answered, so that two robots cannot mail each other forever.

:func:`detect_loop` is a pure function of the ParsedMessage (its ``parts`` are recorded
by the parser's one walk; nothing here parses again).  It looks only at the message's
own top level: its headers, its MIME tree down to (not into) attached
``message/*`` parts, and its inline text parts.  A bounce or an auto-reply that a person
forwards, as an attachment or inline, therefore stays a human message.

Order of the checks (the first that matches decides):

1. our own marker header (``X-Mailtriage-*``) -> ``own``;
2. machine-readable reports: RFC 3464 delivery status (``bounce``), RFC 5965 ARF feedback
   (``bounce``), RFC 8098 disposition notifications (``auto_reply``; a Sieve reject is a
   ``bounce``), Exchange reports sent as TNEF (by MAPI message class);
3. a Message-ID in one of ``own_domains`` -> ``own``;
4. bounces without a report part: ``X-Failed-Recipients``, mailer-daemon senders, a null
   return path or a postmaster-like sender together with bounce wording, a bounce subject
   confirmed by an MTA template or a returned message, a body that opens with an MTA
   template, list managers rejecting a post, bulk-mail services' JSON notifications;
5. explicit auto-reply headers (``Auto-Submitted`` other than ``no``, ``X-Autoreply`` and
   friends, ``Precedence: auto_reply``, vendors' vacation headers) -> ``out_of_office``
   or ``auto_reply`` (but ``Auto-Submitted: auto-generated`` on list mail is ``list``);
6. mailing-list headers -> ``list``;
7. weaker evidence, only in combination: ``Auto-Submitted: no`` cancels all of it.  A null
   return path; an auto-responder's subject ("Automatic reply:", "AUTO: ... is out of
   the office") backed by a header or by auto-reply wording; helpdesk acknowledgements
   backed by a header; challenge/response notices; ``Precedence: bulk/junk``;
8. otherwise ``human``.

Subject heuristics never fire when the subject starts with a reply or forward prefix
(``Re:``, ``AW:``, ``Fwd:``, ``WG:``...), body heuristics never on forwards, never on quoted
text and never on their own; and a subject that asks for help or a body that greets and
asks a question vetoes the phrase-only rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mailtriage.pipeline.loops.auto import (
    auto_submitted,
    auto_verdict,
    explicit_auto_headers,
    weak_evidence,
)
from mailtriage.pipeline.loops.lists import list_reasons, list_subject_tag
from mailtriage.pipeline.loops.mail import Mail, domains, pretty
from mailtriage.pipeline.loops.reports import (
    arf_verdict,
    bounce_verdict,
    dsn_verdict,
    mdn_verdict,
    non_dsn_bounce,
    report_type,
    tnef_verdict,
)
from mailtriage.pipeline.loops.verdict import LoopKind, LoopVerdict
from mailtriage.pipeline.mime import find_message_id
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.pipeline.text import BodyParts

__all__ = ["LoopKind", "LoopVerdict", "detect_loop"]

_OWN_MARKER_PREFIX = "x-mailtriage"


def _own_marker(mail: Mail) -> str | None:
    for name, _ in mail.headers:
        if name.startswith(_OWN_MARKER_PREFIX):
            return f"own:header={pretty(name)}"
    return None


def _own_message_id(mail: Mail, own: set[str]) -> str | None:
    ident = find_message_id(mail.get("message-id") or "")
    if not own or not ident or "@" not in ident:
        return None
    domain = ident.rsplit("@", 1)[1].strip().strip(".").casefold()
    return f"own:message-id={domain}" if domain in own else None


def detect_loop(
    parsed: ParsedMessage,
    *,
    own_domains: Sequence[str] = (),
    envelope_sender: str | None = None,
    body_parts: Callable[[], BodyParts] | None = None,
) -> LoopVerdict:
    """Classify ``parsed`` as human mail or as one kind of automated mail.

    ``own_domains``: the domains of our own Message-IDs.  A message whose Message-ID is
    in one of them (exact match), or that carries an ``X-Mailtriage-*`` header, is our own
    mail coming back (``own``).  ``envelope_sender``: the SMTP MAIL FROM when known, ``""``
    for the null return path ``<>``. ``body_parts``: gives ``split_body(parsed.text)`` when
    the caller has or will want it (the guard then need not split the same text again).
    """
    mail = Mail(parsed, envelope_sender, body_parts)
    own = domains(own_domains)

    marker = _own_marker(mail)
    if marker:
        return LoopVerdict(kind="own", reasons=(marker,))

    # Machine-readable reports.
    rtype = report_type(mail)
    dsn_types = ("message/delivery-status", "message/global-delivery-status")
    dsn_parts = [mail.top] if mail.top.content_type in dsn_types else mail.parts_of(*dsn_types)
    if rtype in ("delivery-status", "global-delivery-status") or dsn_parts:
        reason = f"report:{rtype}" if rtype else f"part:{dsn_parts[0].content_type}"
        return dsn_verdict(mail, dsn_parts[0] if dsn_parts else None, [reason])
    if rtype == "feedback-report" or mail.parts_of("message/feedback-report"):
        return arf_verdict(mail, ["report:feedback-report"])
    if rtype == "disposition-notification" or mail.parts_of("message/disposition-notification"):
        return mdn_verdict(mail, ["report:disposition-notification"])
    tnef = tnef_verdict(mail)
    if tnef is not None:
        return tnef

    own_id = _own_message_id(mail, own)
    if own_id:
        return LoopVerdict(kind="own", reasons=(own_id,))

    bounce = non_dsn_bounce(mail)
    if bounce:
        return bounce_verdict(mail, bounce)

    explicit = explicit_auto_headers(mail)
    lists = list_reasons(mail, own)
    if explicit:
        generated_only = all(r.startswith("header:Auto-Submitted=auto-gen") for r in explicit)
        if not (lists and generated_only):
            return auto_verdict(mail, explicit)
    if lists:
        return LoopVerdict(kind="list", reasons=tuple(lists))
    list_tag = list_subject_tag(mail, own)
    if list_tag:
        return LoopVerdict(kind="list", reasons=(list_tag,))

    if auto_submitted(mail) == "no":
        return LoopVerdict(kind="human", reasons=("header:Auto-Submitted=no",))
    weak = weak_evidence(mail)
    if weak is not None:
        return weak
    return LoopVerdict(kind="human", reasons=())
