"""Reading rules files and the packaged linear model: the edge in front of the pure
classifier (``mailtriage.pipeline.classify`` takes them as values)."""

from __future__ import annotations

import os
from dataclasses import replace
from importlib import resources
from pathlib import Path

from mailtriage.pipeline.classify.linear import LinearModel
from mailtriage.pipeline.classify.rules import Rules, RulesError, rules_from_toml
from mailtriage.triage.model_cache import cached_model

__all__ = ["load_packaged_model", "load_rules"]


def load_rules(path: str | os.PathLike[str] | None = None, *, with_model: bool = True) -> Rules:
    """Load and compile a rules file; ``None`` loads the packaged default together with
    the packaged linear model (``rules/model.json``, trained against the default rules;
    ``with_model=False`` leaves it out).

    Raises :class:`RulesError` naming the offending key when the file is invalid.
    """
    if path is None:
        raw = resources.files("mailtriage").joinpath("rules/default.toml").read_bytes()
        rules = rules_from_toml(raw, "mailtriage/rules/default.toml")
        return replace(rules, model=load_packaged_model()) if with_model else rules
    source = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RulesError(f"rules {source}: cannot read: {exc.strerror or exc}") from exc
    return rules_from_toml(raw, source)


def load_packaged_model() -> LinearModel | None:
    """The linear model shipped in the package, or None when there is none."""
    res = resources.files("mailtriage").joinpath("rules/model.json")
    if not res.is_file():
        return None
    try:
        return cached_model(res.read_bytes())
    except (ValueError, KeyError, TypeError) as exc:
        raise RulesError(f"mailtriage/rules/model.json: unusable ({exc})") from exc
