"""Classify an .eml file: the edge helper of ``mailtriage classify`` and ``eval``."""

from __future__ import annotations

from pathlib import Path

from mailtriage.pipeline.classify import (
    CategoryModel,
    Classification,
    ClassifierInput,
    Rules,
    classify,
    input_from_text,
)

__all__ = ["classify_file", "parse_input"]


def classify_file(path: Path, rules: Rules, model: CategoryModel | None = None) -> Classification:
    """Parse an .eml file with :func:`mailtriage.pipeline.parse.parse_message` and classify it.

    Raises whatever the parser raises for unparseable input, and ``OSError``.
    """
    return classify(parse_input(Path(path).read_bytes()), rules, model)


def parse_input(raw: bytes) -> ClassifierInput:
    """What classification reads of a raw message (parsed with mailtriage's parser)."""
    from mailtriage.pipeline.parse import parse_message  # the MIME layer, owned elsewhere

    msg = parse_message(raw)
    names = tuple(a.filename for a in msg.attachments if getattr(a, "filename", None))
    return input_from_text(msg.subject or "", msg.text or "", names, msg.sender or "")
