"""Delivery reports and bounces: RFC 3464 DSNs, RFC 5965 ARF feedback, RFC 8098
disposition notifications, Exchange reports in TNEF, and bounces without a report part
(MTA templates, mailer-daemon senders, returned messages)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailtriage.pipeline.facts import TNEF_TYPES, FieldBlock, PartInfo, param
from mailtriage.pipeline.loops import patterns as p
from mailtriage.pipeline.loops.auto import auto_subject
from mailtriage.pipeline.loops.mail import (
    Mail,
    auto_original_id,
    bounce_original_id,
    reply_target,
    returned_message_id,
)
from mailtriage.pipeline.loops.verdict import LoopKind, LoopVerdict
from mailtriage.pipeline.mime import find_message_id, fold

# Every character whose fold (mime.fold) contains "{": "{" and its vertical, small and
# fullwidth forms (tests/test_loops.py checks every code point).
FOLDS_TO_BRACE = re.compile("[{\ufe37\ufe5b\uff5b]")


@dataclass(frozen=True)
class _Recipient:
    address: str
    action: str
    status: str | None


def _status_of(value: str | None) -> str | None:
    if not value:
        return None
    match = p.STATUS_RE.search(value)
    return ".".join(match.groups()) if match else None


def _recipients(blocks: Sequence[FieldBlock]) -> list[_Recipient]:
    out: list[_Recipient] = []
    for block in map(dict, blocks):
        if not any(k in block for k in ("final-recipient", "original-recipient", "action")):
            continue
        raw = block.get("final-recipient") or block.get("original-recipient") or ""
        address = raw.split(";", 1)[-1].strip().strip("<>").strip()
        action = fold(block.get("action", "")).partition(" ")[0]
        status = _status_of(block.get("status")) or _status_of(block.get("diagnostic-code"))
        out.append(_Recipient(address, action, status))
    return out


def _text_status(text: str) -> str | None:
    for pattern in (p.SMTP_STATUS_RE, p.HASH_STATUS_RE, p.FIELD_STATUS_RE):
        match = pattern.search(text)
        if match:
            return match.group(1)
    match = p.STATUS_RE.search(text)
    if match and match.group(1) in "45":
        return ".".join(match.groups())
    return None


def _failed_recipients_from_text(mail: Mail) -> list[str]:
    found: list[str] = []
    header = mail.get("x-failed-recipients")
    if header:
        found.extend(a for a in re.split(r"[\s,;]+", header.strip()) if "@" in a)
    if not found:
        found.extend(r.address for r in _recipients(mail.text_fields) if r.address)
    if not found:
        found.extend(p.ADDR_LINE.findall(mail.text))
    unique = dict.fromkeys(a.strip().strip("<>") for a in found)
    return [a for a in unique if a][:50]


def report_type(mail: Mail) -> str:
    if mail.top.content_type != "multipart/report":
        return ""
    return fold(param(mail.top.params, "report-type") or "")


def bounce_verdict(mail: Mail, reasons: list[str]) -> LoopVerdict:
    """A bounce without a machine-readable delivery-status part."""
    if p.DSN_TEXT_FIELD.search(mail.text):
        reasons.append("body:dsn-fields")
        blocks = mail.text_fields
    else:
        blocks = ()
    recipients = [r for r in _recipients(blocks) if r.action not in ("delivered", "relayed")]
    status = next((r.status for r in recipients if r.status), None) or _text_status(mail.text)
    delayed = bool(p.DELAY_TEXT.search(mail.heuristic_subject)) or any(
        r.action.startswith("delay") for r in recipients
    )
    permanent: bool | None
    if delayed and not (status or "").startswith("5"):
        permanent = False
    elif status:
        permanent = status.startswith("5")
    else:
        code = p.SMTP_CODE_RE.search(mail.text)
        permanent = (code.group(1) == "5") if code else None
    return LoopVerdict(
        kind="bounce",
        reasons=tuple(reasons),
        bounce_status=status,
        permanent=permanent,
        failed_recipients=tuple(_failed_recipients_from_text(mail)),
        original_message_id=bounce_original_id(mail),
    )


def dsn_verdict(mail: Mail, part: PartInfo | None, reasons: list[str]) -> LoopVerdict:
    """RFC 3464: per-recipient Action, Status and Final-Recipient."""
    blocks = part.fields if part is not None else mail.text_fields
    recipients = _recipients(blocks)
    failed = [r for r in recipients if r.action.startswith("fail")]
    delayed = [r for r in recipients if r.action.startswith("delay")]
    unknown = [
        r
        for r in recipients
        if r.action not in ("delivered", "relayed", "expanded")
        and not r.action.startswith(("fail", "delay"))
        and (r.status or "")[:1] in ("4", "5")
    ]
    chosen = failed or delayed or unknown
    first = chosen[0] if chosen else None
    status = first.status if first else None
    permanent: bool | None = None
    if first is not None:
        if first.action.startswith("delay"):
            permanent = False
        elif first.action.startswith("fail") or (status or "").startswith("5"):
            # "failed" with a 4.x.x status: the MTA gave up, it will not retry
            permanent = True
        elif (status or "").startswith("4"):
            permanent = False
    if status:
        reasons.append(f"dsn:status={status}")
    if first is not None and first.action:
        reasons.append(f"dsn:action={first.action}")
    elif recipients and not chosen:
        reasons.append("dsn:no-failure")
    return LoopVerdict(
        kind="bounce",
        reasons=tuple(reasons),
        bounce_status=status,
        permanent=permanent,
        failed_recipients=tuple(dict.fromkeys(r.address for r in chosen if r.address)),
        original_message_id=bounce_original_id(mail),
    )


def arf_verdict(mail: Mail, reasons: list[str]) -> LoopVerdict:
    """RFC 5965 abuse report about our mail; the complainant is in failed_recipients."""
    recipients: list[str] = []
    for part in mail.parts_of("message/feedback-report"):
        for block in map(dict, part.fields):
            for key in ("original-rcpt-to", "removal-recipient"):
                if block.get(key):
                    recipients.append(block[key].strip().strip("<>"))
    return LoopVerdict(
        kind="bounce",
        reasons=tuple(reasons),
        failed_recipients=tuple(dict.fromkeys(recipients)),
        original_message_id=returned_message_id(mail) or reply_target(mail),
    )


def mdn_verdict(mail: Mail, reasons: list[str]) -> LoopVerdict:
    """RFC 8098 read receipt; an automatic "deleted" disposition is a Sieve reject."""
    ident: str | None = None
    rejected: list[str] = []
    for part in mail.parts_of("message/disposition-notification"):
        for block in map(dict, part.fields):
            if block.get("original-message-id") and ident is None:
                ident = find_message_id(block["original-message-id"])
            disposition = fold(block.get("disposition", ""))
            if disposition.startswith("automatic-action") and re.search(
                r";\s*(?:deleted|denied|failed)", disposition
            ):
                recipient = block.get("final-recipient") or block.get("original-recipient") or ""
                rejected.append(recipient.split(";", 1)[-1].strip().strip("<>"))
    if rejected:
        status = _text_status(mail.text)
        return LoopVerdict(
            kind="bounce",
            reasons=(*reasons, "mdn:automatic-rejection"),
            bounce_status=status,
            permanent=True if status is None else status.startswith("5"),
            failed_recipients=tuple(a for a in dict.fromkeys(rejected) if a),
            original_message_id=ident or bounce_original_id(mail),
        )
    return LoopVerdict(
        kind="auto_reply",
        reasons=tuple(reasons),
        original_message_id=ident or auto_original_id(mail),
    )


def tnef_verdict(mail: Mail) -> LoopVerdict | None:
    """Exchange reports and rule replies sent as winmail.dat."""
    message_class = next(
        (x.tnef_class for x in mail.parts if x.content_type in TNEF_TYPES and x.tnef_class), None
    )
    if not message_class:
        return None
    folded = message_class.casefold()
    reasons = [f"tnef:{message_class}"]
    if folded.startswith("report.") and folded.endswith((".ndr", ".delayed")):
        return bounce_verdict(mail, reasons)
    if folded.startswith("report.") and folded.endswith((".dr", ".relayed")):
        return LoopVerdict(kind="bounce", reasons=tuple(reasons), original_message_id=None)
    kind: LoopKind | None = None
    if folded.startswith(("report.", "ipm.recall.report")):
        kind = "auto_reply"  # read and not-read receipts (IPNRN, IPNNRN), recall reports
    elif folded.startswith("ipm.note.rules.ooftemplate"):
        kind = "out_of_office"
    elif folded.startswith("ipm.note.rules.replytemplate"):
        kind = "auto_reply"
    if kind is None:
        return None
    return LoopVerdict(
        kind=kind, reasons=tuple(reasons), original_message_id=auto_original_id(mail)
    )


def _bounce_cues(mail: Mail, bounce_subject: bool) -> list[str]:
    """The bounce wording of the subject and the body (and a returned message with it);
    worked out only where a rule needs it (two searches of the whole body)."""
    cues: list[str] = []
    if bounce_subject:
        cues.append("subject:bounce")
    if mail.bounce_template:
        cues.append("body:bounce-template")
    elif mail.bounce_words:
        cues.append("body:bounce")
    if mail.returned_parts and cues:
        cues.append("part:returned-message")
    return cues


def non_dsn_bounce(mail: Mail) -> list[str]:
    """Reasons when the message is a bounce without a delivery-status part.

    The body's bounce wording (``_bounce_cues``) is looked for only where a rule
    needs it: on ordinary mail from a person none does, and no rule fires."""
    if mail.get("x-failed-recipients"):
        return ["header:X-Failed-Recipients"]
    name, addr, local = mail.sender
    subject = mail.heuristic_subject
    bounce_subject = bool(subject) and bool(p.BOUNCE_SUBJECT.search(subject))
    returned = bool(mail.returned_parts)
    subject_cue = auto_subject(mail)
    strong_auto_subject = subject_cue is not None and subject_cue[1]

    daemon = bool(addr or name) and bool(p.DAEMON_LOCAL.match(local) or p.DAEMON_NAME.match(name))
    if daemon and (not strong_auto_subject or bounce_subject or mail.bounce_template):
        return ["sender:mailer-daemon"]

    null = mail.null_sender
    if null and (bounce_subject or not subject_cue):
        cues = _bounce_cues(mail, bounce_subject)
        if cues:
            return [null, *cues]
    # A person (postmasters are people, too) who greets or asks is not an MTA.  Bounce
    # subjects often say "error", so for senders that look like systems only the body
    # counts.
    asks, greeting, question = mail.human_cues
    personal_note = greeting or question or bool(p.HELP_BODY.search(mail.opening))
    postmaster = (
        bool(p.POSTMASTER_LOCAL.match(local))
        or (not addr and bool(p.SYSTEM_NAME.search(name)))
        or "postmaster" in name
    )
    if postmaster:
        cues = _bounce_cues(mail, bounce_subject)
        if (cues or (null and not subject_cue)) and (
            null or mail.bounce_template or returned or not personal_note
        ):
            return ["sender:postmaster", *([null] if null else []), *cues]

    # Without a sender signal: only an MTA's own wording, and only when nobody writes
    # in their own words before it or asks for help.
    if not (personal_note or asks):
        if bounce_subject:
            match = p.BOUNCE_TEMPLATE.search(mail.fresh)
            personal = match is not None and bool(p.PERSONAL.search(mail.fresh[: match.start()]))
            if returned or (match is not None and not personal):
                return _bounce_cues(mail, bounce_subject)
        if p.BOUNCE_OPENING.search(mail.opening):
            return ["body:bounce-opening", *_bounce_cues(mail, bounce_subject)]
    if (
        (p.NOREPLY_LOCAL.match(local) or p.SYSTEM_NAME.search(name))
        and not personal_note
        and len(cues := _bounce_cues(mail, bounce_subject)) >= 2
    ):
        return ["sender:system", *cues]
    # List managers rejecting a post ("you are not a member", "loop alert").
    if p.LIST_ADMIN_LOCAL.search(local) and (
        p.LIST_REJECTION.search(subject) or p.LIST_REJECTION.search(mail.opening)
    ):
        return ["sender:list-manager", "text:rejected"]
    # Bulk-mail services reporting events as JSON (Amazon SES through SNS). Without a
    # character that folds to "{" the folded body cannot start with one (no fold needed).
    if not FOLDS_TO_BRACE.search(mail.text):
        return []
    body = mail.body
    if body.startswith("{") and re.search(
        r'"notificationtype" ?: ?"(?:bounce|complaint|delivery)"', body[:2000]
    ):
        return ["body:esp-notification"]
    return []
