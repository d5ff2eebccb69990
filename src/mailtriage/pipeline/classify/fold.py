"""The one text fold of classification (rules and patterns alike).

Umlauts and ß are spelled out (ä = ae, ß = ss, so Swiss spelling matches German
patterns), typographic quotes and dashes become ASCII, whitespace runs become one space
and the text is lower-cased. At merge this may point to ``mailtriage.pipeline.mime.fold``
if that one does the same (the model features in ``mailtriage.triage`` use it too).
"""

from __future__ import annotations

import re

__all__ = ["FOLD_TABLE", "fold"]

FOLD_TABLE = str.maketrans(
    {
        "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss", "ẞ": "SS",
        "’": "'", "‘": "'", "`": "'", "´": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
        "–": "-", "—": "-", "‐": "-", "‑": "-", "\xa0": " ", "\u200b": "",
    }
)  # fmt: skip
_WS = re.compile(r"\s+")


def fold(text: str) -> str:
    """Fold umlauts, quotes and dashes, collapse whitespace, lower-case."""
    return _WS.sub(" ", text.translate(FOLD_TABLE)).lower()
