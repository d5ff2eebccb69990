"""The pure part of processing one message: raw bytes -> Analysis.

Runs in worker processes (it is CPU-bound: MIME parsing, HTML to text, rules), so its
input and output are plain picklable values and it touches no database or socket.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from mailtriage.pipeline.classify import (
    Classification,
    Rules,
    classify,
    input_from_text,
    load_rules,
)
from mailtriage.pipeline.loops import LoopVerdict, detect_loop
from mailtriage.pipeline.parse import ParsedMessage, ParseLimits, RawInput, parse_message

if TYPE_CHECKING:
    from mailtriage.triage.model import TriageModel


@dataclass(frozen=True)
class AnalysisOptions:
    limits: ParseLimits = field(default_factory=ParseLimits)
    own_domains: tuple[str, ...] = ()
    rules_file: str = ""
    model_file: str = ""  # a trained category model (mailtriage train); "" = none
    ocr: bool = False  # read screenshots with Tesseract (triage.ocr)
    ocr_languages: str = "deu+eng"


@dataclass(frozen=True)
class Analysis:
    parsed: ParsedMessage
    loop: LoopVerdict
    classification: Classification | None  # None for automated mail
    ocr_text: tuple[tuple[str, str], ...] = ()  # (attachment sha256, text) of screenshots


def analyse(
    raw: RawInput, options: AnalysisOptions, envelope_sender: str | None = None
) -> Analysis:
    """Parse, tell automated mail from human mail, classify. Raises ParseError.

    ``raw`` is the message's bytes or the path of a file holding them.
    """
    parsed = parse_message(raw, options.limits)
    verdict = detect_loop(parsed, own_domains=options.own_domains, envelope_sender=envelope_sender)
    classification = None
    ocr: tuple[tuple[str, str], ...] = ()
    if not verdict.automated:
        rules = _rules(options.rules_file)
        names = tuple(a.filename for a in parsed.attachments)
        inp = input_from_text(parsed.subject, parsed.text, names, parsed.sender)
        if options.ocr:
            from mailtriage.pipeline.ocr import ocr_screenshots

            ocr = ocr_screenshots(parsed.attachments, options.ocr_languages)
            if ocr:
                inp = replace(inp, extra_text="\n".join(text for _, text in ocr))
        classification = classify(inp, rules, _model(options.model_file))
    return Analysis(parsed=parsed, loop=verdict, classification=classification, ocr_text=ocr)


def warm_up(options: AnalysisOptions) -> None:
    """Load the rules and the language model now rather than on the first message."""
    from mailtriage.pipeline.classify import ClassifierInput

    classify(
        ClassifierInput("warm up", "warm up text", "", "", (), ""),
        _rules(options.rules_file),
        _model(options.model_file),
    )


@lru_cache(maxsize=4)
def _rules(path: str) -> Rules:
    return load_rules(path or None)


def _model(path: str) -> TriageModel | None:
    """The model at ``path``, reloaded when `mailtriage train` replaced the file."""
    if not path:
        return None
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return _load_model(path, mtime)


@lru_cache(maxsize=2)
def _load_model(path: str, mtime: int) -> TriageModel | None:
    from mailtriage.triage.model import load_model

    return load_model(Path(path))
