"""MIME primitives that every stage shares: header words, Message-IDs, charsets,
HTML to text, control characters and the one text fold.

Every function here is total: broken input (bad base64 in an encoded word, an unknown
charset, NUL bytes) degrades to the best text we can get, it never raises.
"""

from __future__ import annotations

import binascii
import codecs
import email.header
import re
import unicodedata
from functools import cache

import charset_normalizer
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

__all__ = [
    "clean",
    "decode_8bit_header",
    "decode_bytes",
    "decode_text",
    "decode_words",
    "find_message_id",
    "fold",
    "header_text",
    "html_to_text",
    "message_ids",
    "normalise_message_id",
]

# --------------------------------------------------------------------------- controls

# C0 controls other than \t \n \r, and DEL: PostgreSQL rejects NUL in text, and none of
# them is text a person wrote.
_CONTROLS = dict.fromkeys([*range(0, 9), 11, 12, *range(14, 32), 127])
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(value: str) -> str:
    """``value`` without NUL and the other C0 control characters (tab and line
    breaks stay)."""
    if _CONTROL_RE.search(value) is None:
        return value
    return value.translate(_CONTROLS)


# --------------------------------------------------------------------------- headers


def header_text(value: object) -> str:
    """A header value as compat32 hands it out (str, Header, bytes...) as str; never
    raises."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    try:
        return str(value)  # email.header.Header
    except Exception:  # Header.__str__ fails on some broken encodings
        chunks = getattr(value, "_chunks", [])
        return "".join(str(c[0]) for c in chunks)


_SURROGATE_RE = re.compile("[\udc80-\udcff]")


def decode_8bit_header(value: str) -> str:
    """8-bit header bytes (RFC 6532 UTF-8, or a legacy charset) as text.

    compat32 hands them out as surrogate escapes; UTF-8 is tried first, then cp1252.
    """
    if value.isascii() or _SURROGATE_RE.search(value) is None:
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def decode_words(value: str) -> str:
    """RFC 2047 encoded words and 8-bit bytes decoded.

    Never raises: a word with bad base64 yields what the stdlib could read of it (often
    nothing or U+FFFD), an unknown charset is read as UTF-8 (else cp1252), a header
    the stdlib cannot split is returned as written.
    """
    if "=?" not in value:
        return decode_8bit_header(value)
    try:
        chunks = email.header.decode_header(value)
    except (ValueError, LookupError, TypeError, IndexError, binascii.Error):
        return decode_8bit_header(value)
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(decode_8bit_header(chunk))
        elif charset is None:
            out.append(decode_8bit_header(chunk.decode("raw-unicode-escape", "replace")))
        else:
            out.append(decode_bytes(chunk, charset))
    return "".join(out)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared charset; unknown or non-text codecs fall back to UTF-8,
    then cp1252. Never raises."""
    if charset:
        name = _codec(charset)
        if name:
            try:
                return data.decode(name, "replace")
            except (LookupError, ValueError, TypeError):
                pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


@cache
def _codec(charset: str) -> str:
    """The text codec a charset name means, or "" ("x-unknown-123", "base64")."""
    try:
        info = codecs.lookup(charset.strip().strip("\"'"))
    except (LookupError, ValueError, TypeError):
        return ""
    return info.name if getattr(info, "_is_text_encoding", True) else ""


# --------------------------------------------------------------------------- Message-IDs

_MSGID_RE = re.compile(r"<([^<>\s]+)>")


def normalise_message_id(value: str | None) -> str | None:
    """``<abc@x>`` -> ``abc@x``; junk or empty -> None."""
    if not value:
        return None
    value = clean(str(value)).strip()
    found = _MSGID_RE.search(value)
    ident = found.group(1) if found else value.strip("<> \t\r\n")
    if not ident or any(ch.isspace() for ch in ident):
        return None
    return ident[:900]


def message_ids(value: str | None) -> tuple[str, ...]:
    """All Message-IDs in a References/In-Reply-To header, in order, deduplicated."""
    if not value:
        return ()
    found = _MSGID_RE.findall(clean(str(value)))
    if not found:
        one = normalise_message_id(value)
        found = [one] if one else []
    seen: dict[str, None] = {}
    for ident in found:
        seen.setdefault(ident[:900], None)
    return tuple(seen)


def find_message_id(value: str) -> str | None:
    """A Message-ID as robots write them in text (returned headers, In-Reply-To): the
    one in <>, else the first token with an @, else the first token; at most 250
    characters. More lenient than normalise_message_id, which reads our own headers."""
    value = value.strip()
    match = _MSGID_RE.search(value)
    if match:
        ident = match.group(1)
    else:
        tokens = [t.strip("<>") for t in re.split(r"[\s,]+", value) if t.strip("<>")]
        ident = next((t for t in tokens if "@" in t), tokens[0] if tokens else "")
    ident = ident.strip()
    if not ident or len(ident) > 250:
        return None
    return ident


# --------------------------------------------------------------------------- bodies


def decode_text(payload: bytes | bytearray, declared: str | None) -> tuple[str, str | None]:
    """A text part's bytes as str; returns (text, defect or None).

    Trusts the declared charset when the bytes decode cleanly with it; otherwise
    (missing, unknown or wrong charset) charset-normalizer picks the encoding. Never
    raises; the text is free of NUL and other control characters.
    """
    if not payload:
        return "", None
    data = bytes(payload) if isinstance(payload, bytearray) else payload
    name = _codec(declared) if declared else "ascii"
    if name:
        try:
            return clean(data.decode(name)), None
        except (LookupError, UnicodeDecodeError, ValueError):
            pass
    best = None
    try:
        best = charset_normalizer.from_bytes(data).best()
    except Exception:  # a guesser failing is no reason to lose the mail
        best = None
    if best is not None:
        return (
            clean(str(best)),
            f"charset: declared {declared!r} did not decode; used {best.encoding}",
        )
    return clean(data.decode("utf-8", "replace")), (
        f"charset: undecodable text (declared {declared!r})"
    )


_HTML_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_links=False)


def html_to_text(html: str) -> str:
    """Readable text from HTML (layout-aware: tables, lists, line breaks)."""
    if not html.strip():
        return ""
    try:
        return clean(str(get_text(html, _HTML_CONFIG)))
    except Exception:  # inscriptis is robust, but lxml can reject pathological input
        try:
            from lxml import html as lxml_html  # inscriptis depends on lxml

            return clean(str(lxml_html.fromstring(html).text_content()))
        except Exception:
            return clean(re.sub(r"<[^<>]{0,2000}>", " ", html))


# --------------------------------------------------------------------------- fold

# Also used on the rules' patterns (which are not casefolded: "\S" must stay).
FOLD_MAP = str.maketrans(
    {
        "ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ẞ": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue",
        "’": "'", "‘": "'", "`": "'", "´": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
        "–": "-", "—": "-", "‐": "-", "‑": "-", "\xa0": " ", "\u200b": "",
    }
)  # fmt: skip
_WS_RE = re.compile(r"\s+")
_SPACES_RE = re.compile(r"[^\S\n]+")


@cache
def _combining_re() -> re.Pattern[str]:
    """All combining marks (built once, on first use; Unicode has none outside
    U+0300..U+1E94A)."""
    marks = [chr(c) for c in range(0x300, 0x1F000) if unicodedata.combining(chr(c))]
    return re.compile("[" + "".join(re.escape(m) for m in marks) + "]")


def fold(text: str, *, keep_lines: bool = False) -> str:
    """The one normalisation for matching text against words and patterns.

    Casefolded; German umlauts spelled out (``ü`` -> ``ue``, ``ß`` -> ``ss``), other
    accents dropped (``é`` -> ``e``); typographic quotes and dashes as ASCII; runs of
    white space as one space (one space per line with ``keep_lines``). So
    "Rückläufer", "Ruecklaeufer" and "RUCKLÄUFER" fold to text one pattern finds.
    """
    folded = text.casefold()
    if not folded.isascii():
        folded = unicodedata.normalize("NFC", folded).translate(FOLD_MAP)
        if not folded.isascii():
            folded = _combining_re().sub("", unicodedata.normalize("NFKD", folded))
    if keep_lines:
        return "\n".join(_SPACES_RE.sub(" ", line).strip() for line in folded.splitlines())
    return _WS_RE.sub(" ", folded).strip()
