"""Train the category model from labelled examples (agents' corrections + the dev set).

1. Every example is classified by the rules alone (what they chose, how confident,
   whether they fell back, every category's score).
2. The model's probabilities for every example come from k-fold cross-validation, so
   each example is judged by a model that has not seen it.
3. The gate (:class:`mailtriage.triage.model.Gate`) is the one that fixes the most
   rules mistakes net of the right answers it breaks on those held-out predictions; a
   case needs at least ``MIN_NET_FIXES`` to open at all.
4. The final model is fitted on every example, and the dev set is classified with the
   rules alone and with rules + model: if any figure would drop, the gate is narrowed
   (tie-break, then weak rules, then closed) until none does.
5. The corrected priorities train a priority part (the mail plus the classifier's own
   priority, which it learns to keep unless corrected mails say otherwise); it replaces
   the priority only at the probability where it fixed at least ``MIN_NET_FIXES`` more
   than it broke in cross-validation, and not at all if a dev priority figure drops.

Pure apart from reading the dev files; scikit-learn is imported only here.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailtriage.evaluation import LABEL_KEYS, EvalReport, Prediction, evaluate_predictions
from mailtriage.pipeline.classify import (
    Classification,
    ClassifierInput,
    ModelOverride,
    PriorityOverride,
    Rules,
    RulesCategory,
    classify,
    input_from_text,
)
from mailtriage.triage.model import (
    INSTALL_HINT,
    Gate,
    ModelInfo,
    TriageModel,
    decide,
    model_text,
    priority_text,
)

__all__ = [
    "Example",
    "MissingExtra",
    "TrainResult",
    "TrainingError",
    "choose_gate",
    "examples_from_dir",
    "require_sklearn",
    "train",
]

MIN_EXAMPLES = 10
MIN_NET_FIXES = 2
FOLDS = 5
_P_STEPS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_WEAK_CONF = (0.2, 0.3, 0.4, 0.5)
_TIE = (0.05, 0.1, 0.2)
# The priority learnt from corrections replaces the classifier's at this probability or
# more; the most cautious step with the most net fixes in cross-validation is taken.
_PRIORITY_P_STEPS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


class TrainingError(Exception):
    """Training is not possible (too few examples, a missing extra); one line for the user."""


class MissingExtra(TrainingError):
    pass


@dataclass(frozen=True)
class Example:
    inp: ClassifierInput
    labels: Mapping[str, str]  # level, category, priority, language
    source: str  # "dev/0001.eml" or a ticket number
    kind: str = "dev"  # or "correction"


@dataclass(frozen=True)
class GateScore:
    fixes: int
    breaks: int

    @property
    def net(self) -> int:
        return self.fixes - self.breaks


@dataclass(frozen=True)
class TrainResult:
    model: TriageModel
    score: GateScore  # of the chosen gate, on cross-validated predictions
    dev_rules: EvalReport | None  # the dev set classified by the rules alone
    dev_model: EvalReport | None  # ... and by rules + model
    narrowed: tuple[str, ...]  # gate cases closed because a dev figure would drop
    skipped: int  # examples whose category the rules do not know

    def to_dict(self) -> dict[str, object]:
        i = self.model.info
        data: dict[str, object] = {
            "examples": i.examples,
            "dev_examples": i.dev_examples,
            "corrections": i.corrections,
            "skipped": self.skipped,
            "categories": len(i.categories),
            "cross_validation": {
                "model_accuracy": i.cv_model_accuracy,
                "rules_accuracy": i.cv_rules_accuracy,
                "combined_accuracy": i.cv_combined_accuracy,
                "fixes": self.score.fixes,
                "breaks": self.score.breaks,
            },
            "gate": self.model.gate.describe(),
            "narrowed": list(self.narrowed),
            "priority_gate": self.model.priority_gate(),
            "priority_cross_validation": {
                "fixes": i.priority_fixes,
                "breaks": i.priority_breaks,
            },
        }
        if self.dev_rules is not None and self.dev_model is not None:
            data["dev"] = {
                "dir": i.dev_dir,
                "rules": figures(self.dev_rules),
                "with_model": figures(self.dev_model),
            }
        return data


def require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MissingExtra(f"training needs scikit-learn: {INSTALL_HINT}") from None


# ----------------------------------------------------------------------------- data


def examples_from_dir(directory: Path) -> list[Example]:
    """The labelled ``*.eml`` + ``labels.jsonl`` of an eval directory as examples."""
    from mailtriage.pipeline.parse import ParseError, parse_message

    directory = Path(directory)
    labels_file = directory / "labels.jsonl"
    if not labels_file.is_file():
        raise TrainingError(f"{directory}: no labels.jsonl (expected *.eml and labels.jsonl)")
    examples = []
    for lineno, line in enumerate(labels_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise TrainingError(f"{labels_file}:{lineno}: not JSON ({exc})") from None
        if not isinstance(row, dict) or any(k not in row for k in ("file", *LABEL_KEYS)):
            raise TrainingError(f"{labels_file}:{lineno}: needs file, {', '.join(LABEL_KEYS)}")
        try:
            msg = parse_message((directory / row["file"]).read_bytes())
        except (OSError, ParseError) as exc:
            raise TrainingError(f"{directory / row['file']}: {exc}") from exc
        inp = input_from_text(
            msg.subject, msg.text, tuple(a.filename for a in msg.attachments), msg.sender
        )
        labels = {k: str(row[k]) for k in LABEL_KEYS}
        examples.append(Example(inp, labels, f"{directory.name}/{row['file']}"))
    return examples


# ----------------------------------------------------------------------------- rules view


class _Recorder:
    """A CategoryModel that only records what the rules decided."""

    view: RulesCategory | None = None

    def override(self, inp: ClassifierInput, rules: RulesCategory) -> ModelOverride | None:
        self.view = rules
        return None

    def override_priority(self, inp: ClassifierInput, priority: str) -> PriorityOverride | None:
        return None


_Rated = dict[ClassifierInput, tuple[Classification, RulesCategory]]


def _rate(examples: Sequence[Example], rules: Rules) -> _Rated:
    """The rules-only classification of each distinct input, and what the rules saw."""
    rated: _Rated = {}
    for e in examples:
        if e.inp not in rated:
            recorder = _Recorder()
            result = classify(e.inp, rules, recorder)
            assert recorder.view is not None
            rated[e.inp] = (result, recorder.view)
    return rated


# ----------------------------------------------------------------------------- gate


def _score(
    gate: Gate,
    views: Sequence[RulesCategory],
    probas: Sequence[Mapping[str, float]],
    gold: Sequence[str],
) -> tuple[GateScore, int]:
    fixes = breaks = overrides = 0
    for view, proba, truth in zip(views, probas, gold, strict=True):
        decided = decide(view, proba, gate)
        if decided is None or decided[0] == view.category:
            continue
        overrides += 1
        if decided[0] == truth:
            fixes += 1
        elif view.category == truth:
            breaks += 1
    return GateScore(fixes, breaks), overrides


def choose_gate(
    views: Sequence[RulesCategory],
    probas: Sequence[Mapping[str, float]],
    gold: Sequence[str],
    min_net: int = MIN_NET_FIXES,
) -> tuple[Gate, GateScore]:
    """The gate with the most net fixes on held-out predictions (ties: fewer overrides,
    then the more cautious thresholds, which come first).

    The fallback case and the other two cases touch disjoint messages, so they are
    chosen separately; each opens only with at least ``min_net`` net fixes.
    """
    fallback_idx = [i for i, v in enumerate(views) if v.fallback]
    other_idx = [i for i, v in enumerate(views) if not v.fallback]

    def pick(idx: list[int], gates: list[Gate]) -> tuple[Gate, GateScore]:
        sub_v = [views[i] for i in idx]
        sub_p = [probas[i] for i in idx]
        sub_g = [gold[i] for i in idx]
        best, best_score, best_key = Gate(), GateScore(0, 0), (0, 0)
        for gate in gates:
            score, overrides = _score(gate, sub_v, sub_p, sub_g)
            key = (score.net, -overrides)
            if score.net >= min_net and key > best_key:
                best, best_score, best_key = gate, score, key
        return best, best_score

    cautious_p = sorted(_P_STEPS, reverse=True)
    fb_gate, fb_score = pick(fallback_idx, [Gate(fallback_min_p=p) for p in cautious_p])
    weak: list[tuple[float, float | None]] = [(0.0, None)]
    weak += list(itertools.product(sorted(_WEAK_CONF), cautious_p))
    ties: list[float | None] = [None, *_TIE]
    candidates = [
        Gate(weak_confidence=c, weak_min_p=p, tie_margin=t)
        for (c, p), t in itertools.product(weak, ties)
    ]
    other_gate, other_score = pick(other_idx, candidates)
    gate = replace(other_gate, fallback_min_p=fb_gate.fallback_min_p)
    return gate, GateScore(fb_score.fixes + other_score.fixes, fb_score.breaks + other_score.breaks)


# ----------------------------------------------------------------------------- model


def _pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import FeatureUnion, Pipeline

    # Words (readable in the reasons) and character n-grams (German compounds,
    # inflections, error codes); a logistic loss gives probabilities for the gate.
    return Pipeline(
        [
            (
                "features",
                FeatureUnion(
                    [
                        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                        (
                            "chars",
                            TfidfVectorizer(
                                analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2
                            ),
                        ),
                    ]
                ),
            ),
            (
                "clf",
                SGDClassifier(loss="log_loss", alpha=1e-4, max_iter=50, tol=1e-3, random_state=0),
            ),
        ]
    )


def _held_out_probabilities(texts: list[str], gold: list[str]) -> list[dict[str, float]]:
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = min(FOLDS, max(Counter(gold).values()))
    classes = sorted(set(gold))
    proba = cross_val_predict(
        _pipeline(),
        texts,
        gold,
        cv=StratifiedKFold(folds, shuffle=True, random_state=0),
        method="predict_proba",
    )
    return [dict(zip(classes, map(float, row), strict=True)) for row in proba]


def figures(report: EvalReport) -> dict[str, float]:
    """The figures of the goals: accuracy and macro-F1 per label, priority within one."""
    out: dict[str, float] = {}
    for key in LABEL_KEYS:
        out[f"{key}_accuracy"] = report.labels[key].accuracy
        out[f"{key}_macro_f1"] = report.labels[key].macro_f1
    out["priority_within_one"] = report.priority_within_one
    return out


def _report(examples: Sequence[Example], results: Sequence[Classification]) -> EvalReport:
    return evaluate_predictions(
        Prediction(
            e.source,
            dict(e.labels),
            {
                "level": c.level,
                "category": c.category,
                "priority": c.priority,
                "language": c.language,
            },
        )
        for e, c in zip(examples, results, strict=True)
    )


def _drops(before: EvalReport, after: EvalReport) -> list[str]:
    b, a = figures(before), figures(after)
    return [k for k in b if a[k] < b[k] - 1e-9]


def _narrow(
    pipeline: Any, gate: Gate, rules: Rules, dev: Sequence[Example], rated: _Rated
) -> tuple[Gate, EvalReport | None, EvalReport | None, list[str]]:
    """Close gate cases (tie-break, then weak rules, then fallback) while any dev figure
    of rules + model is below the rules alone."""
    if not dev:
        return gate, None, None, []
    placeholder = ModelInfo("", 0, 0, 0, (), "")
    dev_rules = _report(dev, [rated[e.inp][0] for e in dev])

    def with_gate(g: Gate) -> EvalReport:
        model = TriageModel(pipeline, g, placeholder)
        return _report(
            dev,
            [
                classify(e.inp, rules, model) if g.could_open(rated[e.inp][1]) else rated[e.inp][0]
                for e in dev
            ],
        )

    dev_model = with_gate(gate)
    narrowed: list[str] = []
    for case, narrower in (
        ("tie-break", replace(gate, tie_margin=None)),
        ("weak rules", replace(gate, tie_margin=None, weak_min_p=None)),
        ("fallback", Gate()),
    ):
        drops = _drops(dev_rules, dev_model)
        if not drops:
            break
        if narrower == gate:
            continue
        narrowed.append(f"closed {case}: dev {', '.join(drops)} would drop")
        gate = narrower
        dev_model = with_gate(gate)
    return gate, dev_rules, dev_model, narrowed


def _train_priority(
    usable: Sequence[Example], now: Sequence[str]
) -> tuple[Any, float | None, GateScore]:
    """A priority model from the examples' (corrected) priorities, given the priority
    the classifier gives them now (``now``), and the threshold at which it replaces the
    classifier's priority: the one with the most net fixes on
    held-out predictions (at least ``MIN_NET_FIXES``), else none."""
    gold = [e.labels["priority"] for e in usable]
    if len(set(gold)) < 2:
        return None, None, GateScore(0, 0)
    texts = [priority_text(e.inp, p) for e, p in zip(usable, now, strict=True)]
    probas = _held_out_probabilities(texts, gold)
    best_p: float | None = None
    best = GateScore(0, 0)
    for p_min in _PRIORITY_P_STEPS:
        fixes = breaks = 0
        for proba, current, truth in zip(probas, now, gold, strict=True):
            label = max(proba, key=lambda c: proba[c])
            if label == current or proba[label] < p_min:
                continue
            fixes += label == truth
            breaks += current == truth
        score = GateScore(fixes, breaks)
        if score.net >= MIN_NET_FIXES and score.net > best.net:
            best_p, best = p_min, score
    if best_p is None:
        return None, None, best
    return _pipeline().fit(texts, gold), best_p, best


def train(
    examples: Sequence[Example],
    rules: Rules,
    *,
    dev: Sequence[Example] = (),
    dev_dir: str = "",
    now: datetime | None = None,
) -> TrainResult:
    """Fit a model on ``examples`` (dev examples included) and choose its gate; ``dev``
    is checked rules-only vs rules + model. Raises TrainingError, MissingExtra."""
    require_sklearn()
    import sklearn

    usable = [e for e in examples if e.labels["category"] in rules.categories]
    gold = [e.labels["category"] for e in usable]
    if len(usable) < MIN_EXAMPLES or len(set(gold)) < 2:
        raise TrainingError(
            f"too few examples to train on: {len(usable)} in {len(set(gold))} categories "
            f"(need {MIN_EXAMPLES} in at least 2); correct tickets or give --dev DIR"
        )
    texts = [model_text(e.inp) for e in usable]
    rated = _rate([*usable, *dev], rules)
    views = [rated[e.inp][1] for e in usable]
    with warnings.catch_warnings():
        # a category with fewer examples than folds is fine, just less validated
        warnings.simplefilter("ignore", UserWarning)
        probas = _held_out_probabilities(texts, gold)
        pipeline = _pipeline().fit(texts, gold)
    gate, _ = choose_gate(views, probas, gold)
    gate, dev_rules, dev_model, narrowed = _narrow(pipeline, gate, rules, dev, rated)
    # the priority part reads the priority the classifier gives with the category part
    category_part = TriageModel(pipeline, gate, ModelInfo("", 0, 0, 0, (), ""))
    current = [classify(e.inp, rules, category_part).priority for e in usable]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        priority_pipeline, priority_min_p, priority_score = _train_priority(usable, current)
    if priority_min_p is not None and dev and dev_model is not None:
        placeholder = ModelInfo("", 0, 0, 0, (), "")
        full = TriageModel(pipeline, gate, placeholder, "", priority_pipeline, priority_min_p)
        with_priority = _report(dev, [classify(e.inp, rules, full) for e in dev])
        drops = [k for k in _drops(dev_model, with_priority) if k.startswith("priority")]
        if drops:
            narrowed.append(f"closed priority: dev {', '.join(drops)} would drop")
            priority_pipeline, priority_min_p = None, None
        else:
            dev_model = with_priority
    score, _ = _score(gate, views, probas, gold)

    def accuracy(predicted: Sequence[str]) -> float:
        return round(sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold), 4)

    combined = [
        (d[0] if (d := decide(v, p, gate)) else v.category)
        for v, p in zip(views, probas, strict=True)
    ]
    n_dev = sum(1 for e in usable if e.kind == "dev")
    info = ModelInfo(
        trained_at=(now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", ""),
        examples=len(usable),
        dev_examples=n_dev,
        corrections=len(usable) - n_dev,
        categories=tuple(sorted(set(gold))),
        sklearn_version=sklearn.__version__,
        cv_model_accuracy=accuracy([max(p, key=lambda c: p[c]) for p in probas]),
        cv_rules_accuracy=accuracy([v.category for v in views]),
        cv_combined_accuracy=accuracy(combined),
        dev_dir=dev_dir,
        priority_fixes=priority_score.fixes if priority_min_p is not None else 0,
        priority_breaks=priority_score.breaks if priority_min_p is not None else 0,
    )
    model = TriageModel(pipeline, gate, info, "", priority_pipeline, priority_min_p)
    return TrainResult(
        model, score, dev_rules, dev_model, tuple(narrowed), len(examples) - len(usable)
    )
