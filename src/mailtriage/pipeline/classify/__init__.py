"""Rule-based triage: category, level, priority and language of a support mail.

* :mod:`.values` - :class:`ClassifierInput`, :class:`Classification` and the model's view,
* :mod:`.rules` - TOML rules -> a frozen :class:`Rules` value (pure; reading the file is
  :func:`mailtriage.triage.rules_file.load_rules`, at the edge),
* :mod:`.patterns` - pattern syntax, and one scan of a text for every signal group,
* :mod:`.scoring` - :func:`classify` (pure),
* :mod:`.fold` - the one text fold (umlauts, quotes, dashes, whitespace, case).

``classify_file`` (read and parse an .eml, then classify) is an edge helper for the CLI
and lives in :mod:`mailtriage.triage.eml`.
"""

from __future__ import annotations

from mailtriage.pipeline.classify.fold import fold
from mailtriage.pipeline.classify.rules import Rules, RulesError, parse_rules, rules_from_toml
from mailtriage.pipeline.classify.scoring import (
    MAX_ZONE_CHARS,
    classify,
    input_from_parts,
    input_from_text,
)
from mailtriage.pipeline.classify.values import (
    LEVELS,
    PRIORITIES,
    ZONES,
    CategoryModel,
    Classification,
    ClassifierInput,
    ModelOverride,
    PriorityOverride,
    RulesCategory,
)

__all__ = [
    "LEVELS",
    "MAX_ZONE_CHARS",
    "PRIORITIES",
    "ZONES",
    "CategoryModel",
    "Classification",
    "ClassifierInput",
    "ModelOverride",
    "PriorityOverride",
    "Rules",
    "RulesCategory",
    "RulesError",
    "classify",
    "fold",
    "input_from_parts",
    "input_from_text",
    "parse_rules",
    "rules_from_toml",
]
