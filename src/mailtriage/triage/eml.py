"""Classify an .eml file: the edge helper of ``mailtriage classify`` and ``eval``."""

from __future__ import annotations

from pathlib import Path

from mailtriage.pipeline.classify import (
    CategoryModel,
    Classification,
    Rules,
    classify,
    input_from_text,
)

__all__ = ["classify_file"]


def classify_file(path: Path, rules: Rules, model: CategoryModel | None = None) -> Classification:
    """Parse an .eml file with :func:`mailtriage.pipeline.parse.parse_message` and classify it.

    Raises whatever the parser raises for unparseable input, and ``OSError``.
    """
    from mailtriage.pipeline.parse import parse_message  # the MIME layer, owned elsewhere

    msg = parse_message(Path(path).read_bytes())
    names = tuple(a.filename for a in msg.attachments if getattr(a, "filename", None))
    return classify(
        input_from_text(msg.subject or "", msg.text or "", names, msg.sender or ""), rules, model
    )
