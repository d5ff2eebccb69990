"""Rule-based triage: category, level, priority and language of a support mail.

* :mod:`.values` - :class:`ClassifierInput`, :class:`Classification` and the model's view,
* :mod:`.rules` - the TOML rules file -> a frozen :class:`Rules` value (:func:`load_rules`
  reads the file: call it at the edge and pass the value in; :func:`parse_rules` is pure),
* :mod:`.patterns` - pattern syntax, and one scan of a text for every signal group,
* :mod:`.scoring` - :func:`classify` (pure),
* :mod:`.fold` - the one text fold (umlauts, quotes, dashes, whitespace, case).

``classify_file`` (read and parse an .eml, then classify) is an edge helper for the CLI
and lives in :mod:`mailtriage.triage.eml`; it is re-exported here for old imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailtriage.pipeline.classify.fold import fold
from mailtriage.pipeline.classify.rules import Rules, RulesError, load_rules, parse_rules
from mailtriage.pipeline.classify.scoring import MAX_ZONE_CHARS, classify, input_from_text
from mailtriage.pipeline.classify.values import (
    LEVELS,
    PRIORITIES,
    ZONES,
    CategoryModel,
    Classification,
    ClassifierInput,
    ModelOverride,
    RulesCategory,
)

if TYPE_CHECKING:
    from mailtriage.triage.eml import classify_file

__all__ = [
    "LEVELS",
    "MAX_ZONE_CHARS",
    "PRIORITIES",
    "ZONES",
    "CategoryModel",
    "Classification",
    "ClassifierInput",
    "ModelOverride",
    "Rules",
    "RulesCategory",
    "RulesError",
    "classify",
    "classify_file",
    "fold",
    "input_from_text",
    "load_rules",
    "parse_rules",
]


def __getattr__(name: str) -> Any:
    # classify_file reads files, so it lives outside the pure pipeline; imported lazily
    # because mailtriage.triage.eml imports this package.
    if name == "classify_file":
        from mailtriage.triage.eml import classify_file

        return classify_file
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
