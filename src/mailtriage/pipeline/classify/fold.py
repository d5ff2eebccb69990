"""The text fold of classification: :func:`mailtriage.pipeline.mime.fold`, the one fold
of the whole pipeline (umlauts spelled out, other accents dropped, quotes and dashes
as ASCII, white space collapsed, casefolded), so rules, patterns, the loop guard and the
knowledge base match the same text the same way."""

from __future__ import annotations

from mailtriage.pipeline.mime import FOLD_MAP as FOLD_TABLE
from mailtriage.pipeline.mime import fold

__all__ = ["FOLD_TABLE", "fold"]
