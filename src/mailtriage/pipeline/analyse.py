"""The pure part of processing one message: raw bytes -> Analysis.

Runs in worker processes (it is CPU-bound: MIME parsing, HTML to text, rules), so its
input and output are plain values: it touches no database, socket or file. What it
needs that lives in files (the rules, the trained model) the runner loads and hands in
as an :class:`Analyser`; OCR, a subprocess, is an injected function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, partial
from typing import TYPE_CHECKING

from mailtriage.pipeline.classify import (
    Classification,
    ClassifierInput,
    Rules,
    classify,
    input_from_parts,
)
from mailtriage.pipeline.loops import LoopVerdict, detect_loop
from mailtriage.pipeline.parse import ParsedAttachment, ParsedMessage, ParseLimits, parse_message
from mailtriage.pipeline.text import split_body

if TYPE_CHECKING:
    from mailtriage.triage.model import TriageModel

# attachments -> ((attachment sha256, text), ...) of the screenshots it could read
OcrFunction = Callable[[Sequence[ParsedAttachment]], tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Analyser:
    """Everything :func:`analyse` needs besides the message, loaded by the runner."""

    rules: Rules
    model: TriageModel | None = None  # a trained category model (mailtriage train)
    limits: ParseLimits = field(default_factory=ParseLimits)
    own_domains: tuple[str, ...] = ()
    ocr: OcrFunction | None = None  # read screenshots (triage.ocr); None: off


@dataclass(frozen=True)
class Analysis:
    parsed: ParsedMessage
    loop: LoopVerdict
    classification: Classification | None  # None for automated mail
    ocr_text: tuple[tuple[str, str], ...] = ()  # (attachment sha256, text) of screenshots


def analyse(raw: bytes, analyser: Analyser, envelope_sender: str | None = None) -> Analysis:
    """Parse once, tell automated mail from human mail, classify. Raises ParseError."""
    parsed = parse_message(raw, analyser.limits)
    # one split of the body for the loop guard and the classifier, made when the first
    # of them asks (most automated mail is told by its headers: no split at all)
    split = cache(partial(split_body, parsed.text, subject=parsed.subject))
    verdict = detect_loop(
        parsed,
        own_domains=analyser.own_domains,
        envelope_sender=envelope_sender,
        body_parts=split,
    )
    classification = None
    ocr: tuple[tuple[str, str], ...] = ()
    if not verdict.automated:
        names = tuple(a.filename for a in parsed.attachments)
        inp = input_from_parts(parsed.subject, split(), names, parsed.sender)
        if analyser.ocr is not None:
            ocr = analyser.ocr(parsed.attachments)
            if ocr:
                inp = replace(inp, extra_text="\n".join(text for _, text in ocr))
        classification = classify(inp, analyser.rules, analyser.model)
    return Analysis(parsed=parsed, loop=verdict, classification=classification, ocr_text=ocr)


def warm_up(analyser: Analyser) -> None:
    """Run the classifier once so the language model is loaded before the first message."""
    classify(
        ClassifierInput("warm up", "warm up text", "", "", (), ""),
        analyser.rules,
        analyser.model,
    )
