"""The pure part of processing one message: raw bytes -> Analysis.

Runs in worker processes (it is CPU-bound: MIME parsing, HTML to text, rules), so its
input and output are plain picklable values and it touches no database or socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from mailtriage.pipeline.classify import (
    Classification,
    Rules,
    classify,
    input_from_text,
    load_rules,
)
from mailtriage.pipeline.loops import LoopVerdict, detect_loop
from mailtriage.pipeline.parse import ParsedMessage, ParseLimits, RawInput, parse_loaded


@dataclass(frozen=True)
class AnalysisOptions:
    limits: ParseLimits = field(default_factory=ParseLimits)
    own_domains: tuple[str, ...] = ()
    rules_file: str = ""


@dataclass(frozen=True)
class Analysis:
    parsed: ParsedMessage
    loop: LoopVerdict
    classification: Classification | None  # None for automated mail


class StageError(Exception):
    """A permanent failure in a named stage (the message goes to quarantine)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


def analyse(
    raw: RawInput, options: AnalysisOptions, envelope_sender: str | None = None
) -> Analysis:
    """Parse, tell automated mail from human mail, classify. Raises ParseError.

    ``raw`` is the message's bytes or the path of a file holding them.
    """
    msg, parsed = parse_loaded(raw, options.limits)
    verdict = detect_loop(msg, own_domains=options.own_domains, envelope_sender=envelope_sender)
    classification = None
    if not verdict.automated:
        rules = _rules(options.rules_file)
        names = tuple(a.filename for a in parsed.attachments)
        classification = classify(
            input_from_text(parsed.subject, parsed.text, names, parsed.sender), rules
        )
    return Analysis(parsed=parsed, loop=verdict, classification=classification)


def warm_up(options: AnalysisOptions) -> None:
    """Load the rules and the language model now rather than on the first message."""
    from mailtriage.pipeline.classify import ClassifierInput

    classify(ClassifierInput("warm up", "warm up text", "", "", (), ""), _rules(options.rules_file))


@lru_cache(maxsize=4)
def _rules(path: str) -> Rules:
    return load_rules(path or None)
