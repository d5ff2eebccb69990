"""Language of the customer's new text: "de", "en" or "other".

Library choice: ``py3langid`` (maintained fork of langid.py). It is offline (the
model ships inside the wheel, 4 MB), needs only numpy, classifies a mail in well
under a millisecond and gives normalised probabilities. ``lingua-language-detector``
is more accurate on very short snippets in its high-accuracy mode, but that mode
holds some 600 MB of models; its low-accuracy mode (40 MB) misreads short English
("forgot my password pls reset" comes out Italian). ``langdetect`` is unmaintained
since 2021 and non-deterministic unless seeded. On the labelled dev mails py3langid
alone gets 149/150 right; restricting it to the languages a European support desk
plausibly receives (no pidgins or creoles, which win on very short English
snippets) fixes the remaining one. Its model costs about 100 MB of memory per
process, loaded once.

Loading the packaged model means decompressing it (LZMA), most of a second. A runner
may load a cached copy faster and hand it in with :func:`use_identifier`
(``runners.language_model``); otherwise the packaged one is loaded on first use.
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = [
    "CANDIDATE_LANGUAGES",
    "detect_language",
    "has_letters",
    "identifier_loaded",
    "packaged_identifier",
    "use_identifier",
]

# Languages the model may answer with. Everything that is not de/en maps to "other";
# the list only keeps exotic look-alikes (e.g. Nigerian Pidgin for terse English,
# Luxembourgish for Swiss German) from winning on short texts.
CANDIDATE_LANGUAGES: tuple[str, ...] = (
    "de", "en", "fr", "it", "es", "pt", "nl", "pl", "cs", "sk", "sl", "hr", "sr", "bs",
    "hu", "ro", "bg", "el", "tr", "ru", "uk", "sv", "da", "no", "nb", "fi", "et", "lv",
    "lt", "is", "ga", "cy", "mt", "sq", "mk", "ca", "eu", "gl", "ar", "he", "fa", "hi",
    "zh", "ja", "ko", "vi", "th", "id", "ms",
)  # fmt: skip

_MIN_LETTERS = 12

_NOISE = re.compile(
    r"https?://\S+|www\.\S+|\S+@\S+|\[cid:[^\]]*\]|\[image:[^\]]*\]"
    r"|\b[A-Z_]{2,}(?:::[A-Z_]+)+\b|\b\d[\d.,:/%'-]*\b",
)

_lock = threading.Lock()
_identifier: Any = None


def packaged_identifier() -> Any:
    """py3langid's packaged model, restricted to CANDIDATE_LANGUAGES (read compactly,
    see mailtriage.langid_model)."""
    from mailtriage.langid_model import load_identifier

    return load_identifier(CANDIDATE_LANGUAGES)


def use_identifier(identifier: Any) -> None:
    """Use ``identifier`` (a restricted py3langid LanguageIdentifier) from now on."""
    global _identifier
    with _lock:
        _identifier = identifier


def identifier_loaded() -> bool:
    return _identifier is not None


def _get_identifier() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                _identifier = packaged_identifier()
    return _identifier


def has_letters(text: str, least: int) -> bool:
    """Whether ``text`` has at least ``least`` letters; stops counting there (a long
    mail need not be counted to the end)."""
    count = 0
    for ch in text:
        if ch.isalpha():
            count += 1
            if count >= least:
                return True
    return least <= 0


def detect_language(text: str) -> tuple[str, float]:
    """Return ("de" | "en" | "other", probability of that answer).

    Pass the customer's new text only (quoted history must not decide). URLs,
    addresses and numbers are removed first. Text with fewer than 12 letters is
    not judged: ("other", 0.0).
    """
    cleaned = _NOISE.sub(" ", text)
    if not has_letters(cleaned, _MIN_LETTERS):
        return "other", 0.0
    ranked: list[tuple[str, float]] = _get_identifier().rank(cleaned)
    probs = dict(ranked)
    best = ranked[0][0]
    if best in ("de", "en"):
        return best, round(float(probs[best]), 4)
    other = 1.0 - float(probs.get("de", 0.0)) - float(probs.get("en", 0.0))
    return "other", round(max(0.0, other), 4)
