"""The values classification works on: its input, its result, and the model's view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "LEVELS",
    "PRIORITIES",
    "ZONES",
    "CategoryModel",
    "Classification",
    "ClassifierInput",
    "ModelOverride",
    "PriorityOverride",
    "RulesCategory",
]

LEVELS = ("L1", "L2", "L3")
PRIORITIES = ("low", "normal", "high", "urgent")
ZONES = ("subject", "new_text", "forwarded", "quoted", "extra_text", "attachments")


@dataclass(frozen=True)
class ClassifierInput:
    subject: str
    new_text: str  # customer's new text (BodyParts.new_text)
    forwarded_text: str  # forwarded end-user message, counts fully
    quoted_text: str  # weighs little or nothing
    attachment_names: tuple[str, ...]
    sender: str  # lowercased address, e.g. "it@kunde.de"
    extra_text: str = ""  # e.g. OCR text of screenshots (later)


@dataclass(frozen=True)
class Classification:
    level: str
    category: str
    priority: str
    language: str
    confidence: float
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "category": self.category,
            "priority": self.priority,
            "language": self.language,
            "confidence": self.confidence,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class RulesCategory:
    """What the rules made of a message's category, as a model complement sees it."""

    category: str
    confidence: float
    fallback: bool  # no category scored high enough: the fallback category was taken
    ranked: tuple[tuple[str, float], ...]  # every category's score, best first


@dataclass(frozen=True)
class ModelOverride:
    category: str
    confidence: float
    reason: str  # shown after "category=<category>: "


@dataclass(frozen=True)
class PriorityOverride:
    priority: str
    confidence: float
    reason: str  # shown after "priority=<priority>: "


class CategoryModel(Protocol):
    """A statistical complement (see mailtriage.triage.model): it may replace the rules'
    category where the rules are weak, and the priority where the agents' corrections
    taught it to; it returns None to leave the decision as it is."""

    def override(self, inp: ClassifierInput, rules: RulesCategory) -> ModelOverride | None: ...

    def override_priority(self, inp: ClassifierInput, priority: str) -> PriorityOverride | None: ...
