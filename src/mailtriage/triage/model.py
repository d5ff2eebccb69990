"""The statistical category model that complements the rules (extra ``[ml]``).

The rules decide whenever they are confident. The model may replace the rules' category
only through its :class:`Gate`, which `mailtriage train` chose on cross-validated
predictions (see :mod:`mailtriage.triage.training`):

* the rules fell back (no category scored enough) and the model is sure enough,
* the rules' confidence is low and the model is sure enough,
* the rules' two best categories nearly tie and the model prefers the second.

A gate that did not fix more than it broke in cross-validation stays closed, so an
untrained or unhelpful model changes nothing. The level is not modelled: it follows from
the category through the rules, as always. The priority has its own part, learnt from the
corrected priorities, with its own threshold (``priority_min_p``; None keeps it closed).

The model file is a pickle written by `mailtriage train` into our own storage
directory; it is trusted like the config file (never load one from elsewhere).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mailtriage.config import Settings
from mailtriage.pipeline.classify import (
    ClassifierInput,
    ModelOverride,
    PriorityOverride,
    RulesCategory,
)

__all__ = [
    "MODEL_FORMAT",
    "Gate",
    "ModelInfo",
    "TriageModel",
    "configured_model",
    "decide",
    "describe_model",
    "load_model",
    "model_path",
    "model_text",
    "priority_text",
    "save_model",
]

log = logging.getLogger(__name__)

MODEL_FORMAT = 1
DEFAULT_MODEL_FILE = Path("model") / "category.pkl"
INSTALL_HINT = "pip install 'mailtriage[ml]'"

# ----------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class Gate:
    """When the model may replace the rules' category (``None``: never in that case)."""

    fallback_min_p: float | None = None  # the rules fell back; model probability >= this
    weak_confidence: float = 0.0  # rules confidence below this is weak ...
    weak_min_p: float | None = None  # ... and then the model decides when p >= this
    tie_margin: float | None = None  # (top - second) <= margin * top: the model breaks it

    @property
    def active(self) -> bool:
        return (
            self.fallback_min_p is not None
            or self.weak_min_p is not None
            or self.tie_margin is not None
        )

    def could_open(self, view: RulesCategory) -> bool:
        """Cheap pre-check, so the model runs only where the gate may open."""
        if view.fallback:
            return self.fallback_min_p is not None
        if self.weak_min_p is not None and view.confidence < self.weak_confidence:
            return True
        return self.tie_margin is not None and _near_tie(view, self.tie_margin)

    def describe(self) -> str:
        parts = []
        if self.fallback_min_p is not None:
            parts.append(f"rules fell back and p >= {self.fallback_min_p:g}")
        if self.weak_min_p is not None:
            parts.append(
                f"rules confidence < {self.weak_confidence:g} and p >= {self.weak_min_p:g}"
            )
        if self.tie_margin is not None:
            parts.append(f"rules' top two within {self.tie_margin:.0%}")
        return "; ".join(parts) if parts else "closed (the rules alone decide)"


def _near_tie(view: RulesCategory, margin: float) -> bool:
    if len(view.ranked) < 2:
        return False
    (_, s1), (_, s2) = view.ranked[0], view.ranked[1]
    return s1 > 0 and s1 - s2 <= margin * s1


def decide(
    view: RulesCategory, proba: Mapping[str, float], gate: Gate
) -> tuple[str, float, str] | None:
    """The model's category, its probability and why, or None to keep the rules' category.

    Pure, and shared by classification and by the gate search in training.
    """
    if not proba:
        return None
    best = max(proba, key=lambda c: proba[c])
    p = proba[best]
    if view.fallback:
        if gate.fallback_min_p is not None and p >= gate.fallback_min_p and best != view.category:
            return best, p, "the rules fell back"
        return None
    if (
        gate.weak_min_p is not None
        and view.confidence < gate.weak_confidence
        and p >= gate.weak_min_p
        and best != view.category
    ):
        return best, p, f"rules weak ({view.category} {view.confidence:.2f})"
    if gate.tie_margin is not None and _near_tie(view, gate.tie_margin):
        (c1, s1), (c2, s2) = view.ranked[0], view.ranked[1]
        if proba.get(c2, 0.0) > proba.get(c1, 0.0):
            return c2, proba[c2], f"near tie {c1} {s1:.1f} / {c2} {s2:.1f}"
    return None


# ----------------------------------------------------------------------------- features

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_NAME_SEP = re.compile(r"[_.\-]+")


def model_text(inp: ClassifierInput) -> str:
    """The text the model sees: what counts for the rules too (subject, new text,
    forwarded text, screenshot text, attachment names), never the quoted history."""
    names = " ".join(_NAME_SEP.sub(" ", n) for n in inp.attachment_names)
    parts = (inp.subject, inp.new_text, inp.forwarded_text, inp.extra_text, names)
    return "\n".join(p for p in parts if p).lower().translate(_FOLD)


def priority_text(inp: ClassifierInput, priority: str) -> str:
    """What the priority part reads: the model text plus the classifier's own priority
    as a word, so it learns to keep that priority unless the words of corrected mails
    say otherwise."""
    return f"{model_text(inp)}\nzzprio{priority}"


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelInfo:
    trained_at: str  # ISO 8601, UTC
    examples: int
    dev_examples: int
    corrections: int
    categories: tuple[str, ...]
    sklearn_version: str
    # Cross-validated category accuracy on the training examples.
    cv_model_accuracy: float = 0.0
    cv_rules_accuracy: float = 0.0
    cv_combined_accuracy: float = 0.0
    dev_dir: str = ""
    # The priority part: cross-validated net fixes of the chosen threshold (if any).
    priority_fixes: int = 0
    priority_breaks: int = 0


class TriageModel:
    """A fitted scikit-learn text pipeline plus its gate; a ``CategoryModel`` for
    :func:`mailtriage.pipeline.classify.classify`."""

    def __init__(
        self,
        pipeline: Any,
        gate: Gate,
        info: ModelInfo,
        path: str = "",
        priority_pipeline: Any = None,
        priority_min_p: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.gate = gate
        self.info = info
        self.path = path
        # learnt from the corrected priorities; replaces the priority where it is at
        # least this sure (None: never, cross-validation found no net fixes)
        self.priority_pipeline = priority_pipeline
        self.priority_min_p = priority_min_p
        self._word_names: Any = None

    def priority_probabilities(self, inp: ClassifierInput, priority: str) -> dict[str, float]:
        pipeline = self.priority_pipeline
        row = pipeline.predict_proba([priority_text(inp, priority)])[0]
        return {str(c): float(p) for c, p in zip(pipeline.classes_, row, strict=True)}

    def override_priority(self, inp: ClassifierInput, priority: str) -> PriorityOverride | None:
        if self.priority_pipeline is None or self.priority_min_p is None:
            return None
        proba = self.priority_probabilities(inp, priority)
        best = max(proba, key=lambda c: proba[c])
        if best == priority or proba[best] < self.priority_min_p:
            return None
        reason = f"corrections model p={proba[best]:.2f} (was {priority})"
        return PriorityOverride(best, round(proba[best], 2), reason)

    def priority_gate(self) -> str:
        if self.priority_pipeline is None or self.priority_min_p is None:
            return "closed"
        return f"p >= {self.priority_min_p:g}"

    def probabilities(self, inp: ClassifierInput) -> dict[str, float]:
        row = self.pipeline.predict_proba([model_text(inp)])[0]
        return {str(c): float(p) for c, p in zip(self.pipeline.classes_, row, strict=True)}

    def override(self, inp: ClassifierInput, rules: RulesCategory) -> ModelOverride | None:
        if not self.gate.could_open(rules):
            return None
        decided = decide(rules, self.probabilities(inp), self.gate)
        if decided is None:
            return None
        category, p, why = decided
        terms = self.top_terms(inp, category)
        reason = f"model p={p:.2f}, {why}" + (
            "; terms " + ", ".join(f"'{t}'" for t in terms) if terms else ""
        )
        return ModelOverride(category, round(p, 2), reason)

    def top_terms(self, inp: ClassifierInput, category: str, limit: int = 3) -> list[str]:
        """The word features that pushed the message towards ``category`` the most."""
        try:
            features = self.pipeline.named_steps["features"]
            clf = self.pipeline.named_steps["clf"]
            words = features.transformer_list[0][1]
            if self._word_names is None:
                self._word_names = words.get_feature_names_out()
            row = words.transform([model_text(inp)]).tocoo()
            k = list(clf.classes_).index(category)
            coef = clf.coef_[k] if clf.coef_.shape[0] > 1 else clf.coef_[0]
            scored = sorted(
                (
                    (float(v * coef[j]), str(self._word_names[j]))
                    for j, v in zip(row.col, row.data, strict=True)
                ),
                reverse=True,
            )
        except (KeyError, ValueError, IndexError, AttributeError):
            return []
        return [term for score, term in scored[:limit] if score > 0]

    def describe(self) -> dict[str, object]:
        return {
            "path": self.path,
            "trained_at": self.info.trained_at,
            "examples": self.info.examples,
            "dev_examples": self.info.dev_examples,
            "corrections": self.info.corrections,
            "gate": self.gate.describe(),
            "priority_gate": self.priority_gate(),
        }


def save_model(model: TriageModel, path: Path) -> None:
    """Write atomically (temp file + rename), so a running worker never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MODEL_FORMAT,
        "pipeline": model.pipeline,
        "gate": asdict(model.gate),
        "info": asdict(model.info),
        "priority_pipeline": model.priority_pipeline,
        "priority_min_p": model.priority_min_p,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


_warned: set[str] = set()


def _warn_once(path: str, message: str) -> None:
    if path not in _warned:
        _warned.add(path)
        log.warning("triage model %s not used: %s", path, message)


def load_model(path: Path) -> TriageModel | None:
    """The model at ``path``, or None (no file; or unusable: logged once per process)."""
    if not path.is_file():
        return None
    try:
        import sklearn
    except ImportError:
        _warn_once(str(path), f"scikit-learn is not installed ({INSTALL_HINT})")
        return None
    try:
        with path.open("rb") as fh:
            payload = pickle.load(fh)
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise ValueError("unknown model format; run `mailtriage train` again")
        info = payload["info"]
        info["categories"] = tuple(info["categories"])
        model_info = ModelInfo(**info)
        gate = Gate(**payload["gate"])
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ImportError,
        AttributeError,
        KeyError,
        TypeError,
    ) as exc:
        _warn_once(str(path), f"cannot read it ({type(exc).__name__}: {exc})")
        return None
    except ValueError as exc:
        _warn_once(str(path), str(exc))
        return None
    if _minor(model_info.sklearn_version) != _minor(sklearn.__version__):
        _warn_once(
            str(path),
            f"trained with scikit-learn {model_info.sklearn_version}, this is "
            f"{sklearn.__version__}; run `mailtriage train` again",
        )
        return None
    return TriageModel(
        payload["pipeline"],
        gate,
        model_info,
        str(path),
        payload.get("priority_pipeline"),
        payload.get("priority_min_p"),
    )


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def model_path(settings: Settings) -> Path:
    """``triage.model_file``, or ``<storage.dir>/model/category.pkl``."""
    if settings.triage.model_file:
        return Path(settings.triage.model_file)
    return settings.storage_dir / DEFAULT_MODEL_FILE


def configured_model(settings: Settings) -> TriageModel | None:
    """The model the settings ask for, if one has been trained and can be used."""
    if not settings.triage.use_model:
        return None
    return load_model(model_path(settings))


def describe_model(settings: Settings, model: TriageModel | None) -> str:
    """One line for `eval` and `train`: which model (if any) complements the rules."""
    if model is not None:
        i = model.info
        return (
            f"{model.path} (trained {i.trained_at[:16]}Z on {i.examples} examples: "
            f"{i.dev_examples} dev, {i.corrections} corrections; gate: {model.gate.describe()}; "
            f"priority: {model.priority_gate()})"
        )
    if not settings.triage.use_model:
        return "none (triage.use_model = false)"
    path = model_path(settings)
    if path.is_file():
        return f"none ({path} could not be used, see the log)"
    return "none (not trained; run `mailtriage train`)"
