"""Split a plain-text mail body into the customer's new text, quoted history,
signature and a forwarded end-user message.

Pure functions, no I/O. German and English mail clients are covered (Outlook,
Gmail, Thunderbird, Apple Mail, mobile clients), with a few French, Dutch and
Italian reply headers so that foreign-language mails split as well.

Why not a library: ``mail-parser-reply`` was evaluated. It finds reply headers
well, but it does not tell a forwarded message from quoted history, leaves the
forward separator line inside the previous fragment's signature, lets the
signature swallow the disclaimer, and strips all indentation. Post-processing
its output would take as much code as this module, with less control.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = ["BodyParts", "same_split", "split_body"]


@dataclass(frozen=True)
class BodyParts:
    """The parts of a mail body.

    ``new_text``: what the sender wrote in this message (no quote, signature, disclaimer).
    ``quoted``: earlier messages of the thread (reply history, ``>`` quotes).
    ``signature``: closing, name/company block and legal disclaimers of the new text.
    ``forwarded``: the first forwarded message's text (headers and signature removed),
    e.g. the end user's mail inside a helpdesk forward.
    """

    new_text: str
    quoted: str
    signature: str
    forwarded: str


# --------------------------------------------------------------------------- markers

_FORWARD_MARKER = re.compile(
    r"""^[\s*]*(?:
        -{2,}\s*(?:forwarded\ message|weitergeleitete\ nachricht|message\ transf[ée]r[ée]
                  |doorgestuurd\ bericht|messaggio\ inoltrato)\s*-{2,}
      | begin\ forwarded\ message\s*:?
      | anfang\ der\ weitergeleiteten\ nachricht\s*:?
      | début\ du\ message\ réexpédié\s*:?
    )[\s*]*$""",
    re.IGNORECASE | re.VERBOSE,
)

_ORIGINAL_MARKER = re.compile(
    r"""^[\s*]*-{2,}\s*(?:original\ message|ursprüngliche\ nachricht|original-nachricht
        |originalnachricht|message\ d'origine|oorspronkelijk\ bericht|messaggio\ originale)
        \s*-{2,}[\s*]*$""",
    re.IGNORECASE | re.VERBOSE,
)

# "Am 03.07.2026 um 05:21 schrieb X:", "On Sun, 10 May 2026 at 01:25, X wrote:" - the
# header may be wrapped onto a second line by the mail client.
_WROTE_START = re.compile(r"^\s*(?:am|on|le|op|il|el)\s+\S", re.IGNORECASE)
_WROTE_END = re.compile(
    r"(?:schrieb|wrote|a\ écrit|schreef|ha\ scritto|escribió)[^:\n]{0,80}:\s*$"
    r"|(?:^|\s)(?:folgendes|the\ following)\s*:\s*$",
    re.IGNORECASE | re.VERBOSE,
)

_SEPARATOR_LINE = re.compile(r"^\s*(?:_{8,}|-{8,}|={8,})\s*$")

_HEADER_KEYS = (
    "from|von|de|van|da|sent|gesendet|date|datum|envoyé|verzonden|inviato|to|an|à|aan|a"
    "|cc|bcc|subject|betreff|objet|onderwerp|oggetto|reply-to|antwort an|importance|wichtigkeit"
)
_HEADER_LINE = re.compile(rf"^[\s>*]*(?:{_HEADER_KEYS})\s*:\*?(?:\s|$)", re.IGNORECASE)
_FROM_LINE = re.compile(r"^[\s>*]*(?:from|von|de|van|da)\s*:\*?\s*\S", re.IGNORECASE)
_SUBJECT_LINE = re.compile(
    r"^[\s>*]*(?:subject|betreff|objet|onderwerp|oggetto)\s*:\*?\s*(.*)$", re.IGNORECASE
)
_FORWARD_PREFIX = re.compile(r"^\s*(?:fwd?|wg|wtr?|tr|doorst|i|rv)\s*:", re.IGNORECASE)
# New text that announces a forward ("see below", "leite ... weiter").
_FORWARD_HINT = re.compile(
    r"\b(?:forward|fwd|see\ below|below\ from|passing\ (?:this|it)\ on|weiterleit|leite\b.{0,80}"
    r"\bweiter|siehe\ unten|unten\ stehend|untenstehend|nachfolgend|anbei\ die\ (?:meldung|anfrage"
    r"|frage|nachricht)|meldung\ (?:unseres|unserer|aus)|frage\ (?:unseres|unserer|von|aus))",
    re.IGNORECASE | re.VERBOSE,
)

# --------------------------------------------------------------------------- signature

_VALEDICTION = re.compile(
    r"""^\s*(?:
        (?:mit\ )?(?:freundliche[nr]?|beste[nr]?|herzliche[nr]?|liebe[nr]?|viele[nr]?
           |schöne[nr]?|sonnige[nr]?|kollegiale[nr]?|freundlichen\ und\ sonnige[nr]?)?
           \s*gr(?:ü|ue|u)(?:ß|ss)(?:e|en|le)?
      | (?:vielen\ |besten\ |herzlichen\ )?dank(?:e|\ und|\ euch|\ ihnen)?
           (?:\s+(?:und|&)\s+.{0,40})?
      | mfg | lg | vg | bg | sg
      | servus | ciao | tschüss
      | (?:best|kind|warm|warmest|many\ thanks\ and|thanks\ and|with\ kind|kindest)?\s*regards
      | best(?:\ wishes)? | cheers | sincerely | yours\ (?:sincerely|truly|faithfully)
      | (?:many\ )?thanks(?:\ (?:again|a\ lot|in\ advance))? | thank\ you(?:\ very\ much)?
      | thx | ta
      | cordialement | bien\ à\ vous | meilleures\ salutations | salutations | merci
      | met\ vriendelijke\ groet(?:en)? | groeten | grazie | cordiali\ saluti | saluti
      | hälsningar | mvh | pozdrawiam | saludos
    )\b[\s,.!]*[^\n?]{0,40}$""",
    re.IGNORECASE | re.VERBOSE,
)
_SIG_DASHES = re.compile(r"^--\s?$")
_MOBILE_FOOTER = re.compile(
    r"^\s*(?:sent\ from\ my|von\ meinem\ \S+(?:\ \S+)?\ gesendet|gesendet\ von\ meinem"
    r"|get\ outlook\ for|envoyé\ de\ mon|verzonden\ vanaf|inviato\ da)\b",
    re.IGNORECASE | re.VERBOSE,
)
_DISCLAIMER = re.compile(
    r"""vertraulich|confidential|privileged|rechtlich\ geschützt|intended\ (?:only\ )?for
      |bestimmt\ (?:ist|sind)?|nicht\ der\ (?:richtige|vorgesehene)\ (?:adressat|empfänger)
      |received\ this\ (?:e-?mail|message)\ in\ error|irrtümlich|unbefugte|unzulässig
      |consider\ the\ environment|denken\ sie\ an\ die\ umwelt|vor\ dem\ ausdrucken|before\ printing
      |informationen\ zum\ datenschutz|datenschutzhinweis|privacy\ notice|disclaimer
      |amtsgericht|registergericht|handelsregister|\bhrb\b|\bhra\b|geschäftsführ|vorstand
      |aufsichtsrat|registered\ (?:in|office)|company\ (?:number|no\.?)|ust-?id|\bmwst\b|\bvat\b
      |sitz\ der\ gesellschaft|\bsitz\s*:""",
    re.IGNORECASE | re.VERBOSE,
)
# A sentence that is clearly message text, not a name/company block line.
_PROSE = re.compile(r"[?]|\b(?:ich|wir|bitte|please|we|i|you|sie)\b.{30,}", re.IGNORECASE)


# --------------------------------------------------------------------------- helpers


def _is_wrote_header(lines: list[str], i: int) -> int:
    """Return how many lines the "On ... wrote:" header at ``i`` spans (0 if none)."""
    line = lines[i].lstrip("> ").strip()
    if not line:
        return 0
    if _WROTE_START.match(line) or "schrieb" in line.lower() or "wrote" in line.lower():
        if _WROTE_END.search(line) and len(line) < 250:
            return 1
        if i + 1 < len(lines) and _WROTE_START.match(line):
            joined = line + " " + lines[i + 1].lstrip("> ").strip()
            if _WROTE_END.search(joined) and len(joined) < 250:
                return 2
    return 0


def _header_block_end(lines: list[str], i: int) -> int:
    """If a mail header block (From/Sent/To/Subject) starts at ``i``, return the index
    of the first line after it, else -1. Requires a From line plus at least two other
    header lines so that a sentence starting with "An:" is not mistaken for one."""
    if not _HEADER_LINE.match(lines[i]):
        return -1
    j = i
    keys = 0
    has_from = False
    while j < len(lines) and j - i < 12:
        line = lines[j]
        if _HEADER_LINE.match(line):
            keys += 1
            has_from = has_from or bool(_FROM_LINE.match(line))
        elif (line.strip() and keys and not line.startswith((" ", "\t"))) or not line.strip():
            break
        j += 1
    if has_from and keys >= 3:
        return j
    return -1


def _header_subject(lines: list[str], start: int, end: int) -> str:
    for line in lines[start:end]:
        m = _SUBJECT_LINE.match(line)
        if m:
            return m.group(1)
    return ""


@dataclass
class _Marker:
    index: int  # first line of the marker
    body_start: int  # first line of the message the marker introduces
    kind: str  # "forward", "reply", "block" (header block: forward or reply), "quote"
    subject: str = ""


def _marker_with_headers(lines: list[str], index: int, start: int, kind: str) -> _Marker:
    """A marker line at ``index``, followed from ``start`` by an optional header block
    (From:/Von:, Subject:/Betreff:...) that the introduced message's body follows."""
    block_end = _header_block_end(lines, start) if start < len(lines) else -1
    if block_end > 0:
        return _Marker(index, block_end, kind, _header_subject(lines, start, block_end))
    return _Marker(index, start, kind)


def _find_markers(lines: list[str]) -> list[_Marker]:
    markers: list[_Marker] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        if _FORWARD_MARKER.match(stripped):
            end = i + 1
            while end < n and not lines[end].strip():
                end += 1
            markers.append(_marker_with_headers(lines, i, end, "forward"))
            i = markers[-1].body_start
            continue
        if _ORIGINAL_MARKER.match(stripped):
            markers.append(_marker_with_headers(lines, i, i + 1, "block"))
            i = markers[-1].body_start
            continue
        if _SEPARATOR_LINE.match(line) and i + 1 < n:
            nxt = i + 1
            while nxt < n and not lines[nxt].strip() and nxt - i < 3:
                nxt += 1
            block_end = _header_block_end(lines, nxt) if nxt < n else -1
            if block_end > 0:
                subject = _header_subject(lines, nxt, block_end)
                markers.append(_Marker(i, block_end, "block", subject))
                i = block_end
                continue
        block_end = _header_block_end(lines, i)
        if block_end > 0:
            subject = _header_subject(lines, i, block_end)
            markers.append(_Marker(i, block_end, "block", subject))
            i = block_end
            continue
        span = _is_wrote_header(lines, i)
        if span:
            markers.append(_Marker(i, i + span, "reply"))
            i += span
            continue
        if line.lstrip().startswith(">"):
            start = i
            while i < n and (lines[i].lstrip().startswith(">") or not lines[i].strip()):
                i += 1
            # A ">" run with the sender's own text after it is an interleaved or
            # bottom-posted reply: its ">" lines are moved to the quote later.
            if not _has_own_text(lines[i:]):
                markers.append(_Marker(start, start, "quote"))
            continue
        i += 1
    return markers


def _has_own_text(rest: list[str]) -> bool:
    """True if ``rest`` holds unquoted text before the next history marker."""
    for j, line in enumerate(rest):
        if not line.strip() or line.lstrip().startswith(">"):
            continue
        if _is_wrote_header(rest, j) or _header_block_end(rest, j) > 0:
            return False
        if _FORWARD_MARKER.match(line.strip()) or _ORIGINAL_MARKER.match(line.strip()):
            return False
        return not (_SIG_DASHES.match(line.strip()) or _MOBILE_FOOTER.match(line.strip()))
    return False


def _strip_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    """Split ``lines`` into (text, signature). The signature starts at a "-- " line,
    a mobile footer, a closing formula ("Viele Grüße", "Best regards") followed only
    by a short name/company block, or a trailing legal disclaimer."""
    n = len(lines)
    content_seen = False
    for i, line in enumerate(lines):
        s = line.strip()
        if _SIG_DASHES.match(s) or (content_seen and _MOBILE_FOOTER.match(s)):
            return lines[:i], lines[i:]
        if content_seen and _VALEDICTION.match(s) and _looks_like_sig_block(lines[i + 1 :]):
            return lines[:i], lines[i:]
        if s:
            content_seen = True
    # no closing formula: cut trailing disclaimer/company paragraphs, then a bare
    # name block ("Jan Muster\nIT-Leitung\nMuster AG") if text remains above it
    cut = n
    j = n - 1
    name_block_seen = False
    while j >= 0:
        para_end = j
        while j >= 0 and lines[j].strip():
            j -= 1
        block = [x.strip() for x in lines[j + 1 : para_end + 1]]
        para = " ".join(block)
        if not para:
            j -= 1
            continue
        if _DISCLAIMER.search(para):
            cut = j + 1
            j -= 1
            continue
        if not name_block_seen and _is_name_block(block) and any(x.strip() for x in lines[: j + 1]):
            name_block_seen = True
            cut = j + 1
            j -= 1
            continue
        break
    return lines[:cut], lines[cut:]


_NAME_LINE = re.compile(
    r"^(?:(?:Dr|Prof|Dipl|Ing|Mag|Mr|Mrs|Ms)\.?\s+)*[A-ZÄÖÜÀ-Ý][\w'’.-]*(?:\s+[A-ZÄÖÜÀ-Ý][\w'’.-]*){0,3},?$"
)


def _is_name_block(block: list[str]) -> bool:
    """1-6 short lines starting with a person's name, no sentences or questions."""
    if not 1 <= len(block) <= 6 or not _NAME_LINE.match(block[0]):
        return False
    for line in block:
        if (
            len(line) > 80
            or line.endswith(("?", ":"))
            or (line.endswith(".") and len(line.split()) > 4)
        ):
            return False
        if _PROSE.search(line):
            return False
    return True


def _looks_like_sig_block(rest: list[str]) -> bool:
    """True if what follows a closing formula is a name/company block or a disclaimer."""
    body = [x.strip() for x in rest if x.strip()]
    if not body:
        return True
    short = 0
    for line in body:
        if _SIG_DASHES.match(line) or _MOBILE_FOOTER.match(line):
            return True
        if _DISCLAIMER.search(line):
            continue
        if len(line) > 110 or (_PROSE.search(line) and len(line) > 60):
            return False
        short += 1
        if short > 14:
            return False
    return True


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n").rstrip()


def _dedent(text: str) -> str:
    """Strip blank edges and the common indentation HTML-to-text converters add."""
    lines = text.split("\n")
    indents = [len(x) - len(x.lstrip(" ")) for x in lines if x.strip()]
    pad = min(indents) if indents else 0
    return "\n".join(x[pad:] if len(x) >= pad else x.lstrip(" ") for x in lines)


def _unquote(lines: list[str]) -> list[str]:
    return [re.sub(r"^\s*>\s?", "", x) for x in lines]


# --------------------------------------------------------------------------- public


# Characters of a body that are searched for markers. A reply's own text, its quote
# header and its signature are at the top; a 30 MB log pasted into a mail is not
# searched line by line for them (the whole text is still stored).
MAX_SPLIT_CHARS = 256 * 1024


def split_body(text: str, subject: str = "") -> BodyParts:
    """Separate new text, quoted history, signature and forwarded message.

    ``subject`` is optional; a forward prefix there ("WG:", "Fwd:", "FW:") tells that
    an Outlook-style header block ("Von: ... Gesendet: ...") introduces a forwarded
    message rather than reply history. Only the first MAX_SPLIT_CHARS are searched;
    the rest joins the part the searched text ends in.
    """
    if len(text) <= MAX_SPLIT_CHARS:
        return _split_body(text, subject)
    cut = text.rfind("\n", 0, MAX_SPLIT_CHARS)
    cut = cut if cut > 0 else MAX_SPLIT_CHARS
    parts = _split_body(text[:cut], subject)
    tail = text[cut:].rstrip()
    if parts.quoted:
        return replace(parts, quoted=parts.quoted + tail)
    if parts.forwarded:
        return replace(parts, forwarded=parts.forwarded + tail)
    return replace(parts, new_text=parts.new_text + tail)


def _split_body(text: str, subject: str) -> BodyParts:
    text = _dedent(text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " "))
    lines = text.split("\n")
    markers = _find_markers(lines)

    if not markers:
        body, sig = _strip_signature(lines)
        quoted_only = [x for x in body if x.lstrip().startswith(">")]
        kept = [x for x in body if not x.lstrip().startswith(">")]
        return BodyParts(
            _join(kept).strip(), _join(_unquote(quoted_only)).strip(), _join(sig).strip(), ""
        )

    first = markers[0]
    head = lines[: first.index]
    head_text, sig_lines = _strip_signature(head)
    new_text = _join(head_text)

    is_forward = first.kind == "forward" or (
        first.kind == "block"
        and (
            bool(_FORWARD_PREFIX.match(subject))
            or bool(_FORWARD_PREFIX.match(first.subject))
            or bool(_FORWARD_HINT.search(new_text))
        )
    )
    # A forward with nothing written above it: the forward is all there is.
    forwarded = ""
    quoted_lines: list[str] = []
    if is_forward:
        nxt = next((m for m in markers[1:] if m.index >= first.body_start), None)
        end = nxt.index if nxt else len(lines)
        fwd_body, _fwd_sig = _strip_signature(lines[first.body_start : end])
        forwarded = _join(fwd_body).strip()
        if nxt:
            quoted_lines = lines[nxt.index :]
    else:
        quoted_lines = lines[first.index :]

    # Interleaved ">" lines above the first marker belong to the quote, not the new text.
    if any(x.lstrip().startswith(">") for x in head_text):
        kept = [x for x in head_text if not x.lstrip().startswith(">")]
        moved = [x for x in head_text if x.lstrip().startswith(">")]
        new_text = _join(kept)
        quoted_lines = moved + quoted_lines

    quoted = _join(_unquote(quoted_lines)).strip()
    return BodyParts(new_text.strip(), quoted, _join(sig_lines).strip(), forwarded)


def _line_breaks(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def same_split(text: str, other: str) -> bool:
    """Whether :func:`split_body` splits ``text`` and ``other`` alike (for the same
    subject), told without splitting either: they differ at most in line endings
    (``\r\n`` and ``\r`` are read as ``\n``) and in line breaks at the end (blank last
    lines end no header block, start no marker or signature and are stripped from every
    part), and neither is longer than MAX_SPLIT_CHARS (both are split whole).

    The loop guard reads the message's inline text, the classifier the parser's
    normalised text: nearly always the same text, split once."""
    if len(text) > MAX_SPLIT_CHARS or len(other) > MAX_SPLIT_CHARS:
        return False
    return _line_breaks(text) == _line_breaks(other)
