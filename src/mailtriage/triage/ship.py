"""Train the linear model shipped in the package (``mailtriage/rules/model.json``).

    python -m mailtriage.triage.ship [--labeled tests/labeled] [--cv] [--out FILE]

Examples: every mail of ``dev/`` and those of ``train/`` not named in
``train/holdout.txt`` (the holdout is never read here). Each example is classified by the
default rules alone; the model learns category, level and priority from the words plus
the rules' decisions and the impact facts (:mod:`mailtriage.pipeline.classify.linear`).
``--cv [--folds 5] [--repeats 2]`` prints repeated k-fold cross-validated figures over
all these tuning mails (each fold classified by the rules plus a model trained on the
other folds only), over all of them and over their train/ and dev/ parts (the rules
were written against dev/, never against train/), as mean +- standard deviation over the
folds, for each setting of the grid, with each setting's paired difference from the
first (the shipped one); it writes nothing. Needs scikit-learn (the ``[dev]``/``[ml]``
extras); running the shipped model does not. Deterministic: the same data give the same file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mailtriage.evaluation import (
    holdout_files,
    label_metrics,
    predicted_labels,
    read_labels,
    within_one,
)
from mailtriage.pipeline.classify import ClassifierInput, classify
from mailtriage.pipeline.classify.linear import LabelModel, LinearModel, tokens
from mailtriage.pipeline.classify.scoring import combine_features, decide_by_rules
from mailtriage.triage.eml import parse_input
from mailtriage.triage.rules_file import load_rules

__all__ = ["main", "train_model"]

LABELS = ("category", "priority")  # the level follows from the category by the rules
SCORED = ("category", "level", "priority")
DEFAULT_C = 32.0
DEFAULT_META_WEIGHTS = {"category": 0.1, "priority": 0.5}
DEFAULT_DEV_WEIGHT = 0.3
# History of the grid (every round by cross-validation on tuning mails only): the first
# grid (C 2-32, meta 0.05-2, dev 0.3/1) led to the defaults. Issue 15's second round
# (priority only: C 4-128, priority meta weight 0.25-2, dev weight 0-1, word vs character
# grams, more impact facts, fact conjunctions, ordinal models, facts-only blends) was flat
# within 0.74-0.79 priority exact in cross-validation, and the best of it (0.775) left
# the holdout at 0.68 and took the check set from 0.79 to 0.71: not kept. The third round
# judged every change by repeated 5-fold CV over all 350 tuning mails (`--cv --repeats
# 10`, 50 folds) and took none whose gain was below the standard deviation of its paired
# per-fold difference. The shipped setting: priority 0.795 +- 0.044 (train/ part 0.746),
# category 0.852, level F1 0.899, within one 0.984. The rules' feature scores as meta
# features (GRID[1:]): priority +0.008 +- 0.026 (meta 0.5), +0.016 +- 0.025 (meta 0.35),
# level and category +0.00-0.01: below the noise, not shipped. Priority-only probes (the
# same 350 mails, 3 x 5 folds) were flat too: C 1-128, meta weight 0.25-2, dev weight
# 0-1, word 1-2-grams, 3k-20k character grams, balanced classes, a facts-only model and
# blends with it, an ordinal (cumulative logit) model (-0.05 exact, +0.01 within one),
# expected-cost and median decoding, the annotators' "why" lines as extra training text
# (+0.01). The fourth round changed the impact facts, not the model: facts for the
# guideline criteria the cross-validated priority errors of the train/ tuning part missed
# (impact.py: team_unable, only_one, works_anyway, dated; fewer false workarounds and
# wishes; exposure to outsiders as a security incident): priority +0.031 +- 0.027
# (train/ part +0.054 +- 0.039, to 0.800), within one +0.008, level and category flat.
# Within the noise, not kept: category x fact meta features (+0.009 +- 0.016; per kind
# of category +0.010 +- 0.019, category -0.006), the text's length (-0.003), an "all
# users" scope fact (-0.001), an estimate asked for (+0.008 +- 0.017), a short plain
# question (+0.002), a narrower data-loss fact (+0.001), without the rules' priority
# (train/ part +0.001, dev part -0.156).
MIN_DF = 2
MAX_FEATURES = 10000


@dataclass(frozen=True)
class Row:
    source: str  # "dev" or "train"
    file: str
    text: str
    meta: dict[str, float]
    inp: ClassifierInput
    gold: dict[str, str]
    rules: dict[str, str]


def _rows(directory: Path, source: str) -> list[Row]:
    rules = load_rules(with_model=False)
    skip = holdout_files(directory)
    rows = []
    for label in read_labels(directory):
        if label["file"] in skip:
            continue
        inp = parse_input((directory / label["file"]).read_bytes())
        decision, _, _ = decide_by_rules(inp, rules)
        text, meta, _ = combine_features(inp, decision)
        gold = {k: label[k] for k in SCORED}
        got = {"category": decision.category, "level": decision.level}
        got["priority"] = decision.priority
        rows.append(Row(source, label["file"], text, meta, inp, gold, got))
    return rows


def _matrix(rows: Sequence[Row], vectorizer: Any, meta: dict[str, int], weight: float) -> Any:
    from scipy.sparse import csr_matrix, hstack

    words = vectorizer.transform([r.text for r in rows])
    data, ri, ci = [], [], []
    for i, r in enumerate(rows):
        for name, value in r.meta.items():
            if name in meta:
                data.append(weight * value)
                ri.append(i)
                ci.append(meta[name])
    extra = csr_matrix((data, (ri, ci)), shape=(len(rows), len(meta)))
    return hstack([words, extra]).tocsr()


def train_model(
    rows: Sequence[Row],
    c: float = DEFAULT_C,
    meta_weights: Mapping[str, float] = DEFAULT_META_WEIGHTS,
    dev_weight: float = DEFAULT_DEV_WEIGHT,
) -> LinearModel:
    """Fit one logistic regression per label. ``meta_weights`` (per label) is the value
    of the meta features while fitting: the smaller, the more the label must be earned
    from the words rather than copied from the rules. It is folded into the exported
    coefficients, so the model scores meta features with value 1."""
    from threadpoolctl import threadpool_limits

    # one thread: BLAS threads on a busy 2-core machine made each fit 20x slower
    with threadpool_limits(limits=1):
        return _train_model(rows, c, meta_weights, dev_weight)


def _train_model(
    rows: Sequence[Row],
    c: float,
    meta_weights: Mapping[str, float],
    dev_weight: float,
) -> LinearModel:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(
        analyzer=tokens, sublinear_tf=True, min_df=MIN_DF, max_features=MAX_FEATURES
    )
    vectorizer.fit([r.text for r in rows])
    vocabulary = {str(t): int(i) for t, i in vectorizer.vocabulary_.items()}
    offset = len(vocabulary)
    names = sorted({m for r in rows for m in r.meta})
    meta = {name: offset + i for i, name in enumerate(names)}
    # the rules were written against dev/: there their decisions look better than they
    # are, so dev examples may count less
    weights = [dev_weight if r.source == "dev" else 1.0 for r in rows]
    labels = {}
    for label in LABELS:
        w = meta_weights[label]
        x = _matrix(rows, vectorizer, {n: i - offset for n, i in meta.items()}, w)
        clf = LogisticRegression(C=c, max_iter=5000)
        clf.fit(x, [r.gold[label] for r in rows], sample_weight=weights)
        coef = np.array(clf.coef_, dtype=np.float64)
        intercept = np.array(clf.intercept_, dtype=np.float64)
        if coef.shape[0] == 1:  # binary: sklearn keeps one row; make it two (softmax)
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        coef[:, offset:] *= w
        labels[label] = LabelModel(tuple(str(k) for k in clf.classes_), coef, intercept)
    info = {
        "examples": len(rows),
        "sources": sorted({r.source for r in rows}),
        "c": c,
        "meta_weights": dict(meta_weights),
        "dev_weight": dev_weight,
        "min_df": MIN_DF,
        "max_features": MAX_FEATURES,
    }
    return LinearModel(vocabulary, [float(v) for v in vectorizer.idf_], meta, 1.0, labels, info)


def fold_figures(rows: Sequence[Row], predicted: Sequence[Mapping[str, str]]) -> dict[str, float]:
    """The issue's figures of predictions against the rows' gold labels."""
    gold = {k: [r.gold[k] for r in rows] for k in ("level", "category", "priority")}
    guess = {k: [p[k] for p in predicted] for k in gold}
    out = {
        "level_f1": label_metrics(gold["level"], guess["level"]).macro_f1,
        "category": label_metrics(gold["category"], guess["category"]).accuracy,
        "priority": label_metrics(gold["priority"], guess["priority"]).accuracy,
    }
    out["within_one"] = within_one(gold["priority"], guess["priority"])
    return out


@dataclass(frozen=True)
class Setting:
    """One point of the grid: how the model is trained and when it may speak."""

    c: float = DEFAULT_C
    category_meta: float = DEFAULT_META_WEIGHTS["category"]
    priority_meta: float = DEFAULT_META_WEIGHTS["priority"]
    dev_weight: float = DEFAULT_DEV_WEIGHT

    def train(self, rows: Sequence[Row]) -> LinearModel:
        weights = {"category": self.category_meta, "priority": self.priority_meta}
        return train_model(rows, self.c, weights, self.dev_weight)


# The first setting is the shipped one; each other is compared with it on the same folds.
GRID = (Setting(),)


def cross_validate(
    rows: Sequence[Row], setting: Setting, folds: int = 5, repeats: int = 2
) -> list[dict[str, dict[str, float]]]:
    """Repeated stratified k-fold over every row (the tuning mails: dev/ and train/ outside
    the holdout): each fold's mails are classified by the rules plus a model trained on
    the other folds only. One entry per fold: part ("all", "dev", "train") -> figures."""
    from sklearn.model_selection import StratifiedKFold

    rules = load_rules(with_model=False)
    strata = [f"{r.source}/{r.gold['priority']}" for r in rows]
    out = []
    for seed in range(repeats):
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for train_idx, test_idx in splitter.split(strata, strata):
            model = setting.train([rows[i] for i in train_idx])
            with_model = replace(rules, model=model)
            tested = [rows[i] for i in test_idx]
            predicted = [predicted_labels(classify(r.inp, with_model)) for r in tested]
            fold = {"all": fold_figures(tested, predicted)}
            for part in ("dev", "train"):
                pairs = [(r, p) for r, p in zip(tested, predicted, strict=True) if r.source == part]
                fold[part] = fold_figures([r for r, _ in pairs], [p for _, p in pairs])
            out.append(fold)
    return out


def describe(
    folds: Sequence[Mapping[str, Mapping[str, float]]],
    baseline: Sequence[Mapping[str, Mapping[str, float]]] | None = None,
) -> list[str]:
    """Mean +- standard deviation over the folds, per part; with ``baseline`` (the same
    folds under another setting), the paired difference and its standard deviation:
    a change whose gain is below that deviation is noise."""
    lines = []
    for part in ("all", "train", "dev"):
        cells = []
        for key in ("level_f1", "category", "priority", "within_one"):
            values = np.array([f[part][key] for f in folds])
            cell = f"{key} {values.mean():.3f}+-{values.std():.3f}"
            if baseline is not None:
                diff = values - np.array([f[part][key] for f in baseline])
                cell += f" ({diff.mean():+.3f}+-{diff.std():.3f})"
            cells.append(cell)
        lines.append(f"  {part:<5} " + "  ".join(cells))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[3]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labeled", type=Path, default=root / "tests" / "labeled")
    ap.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "rules/model.json")
    ap.add_argument("--cv", action="store_true", help="cross-validate a grid, write nothing")
    ap.add_argument("--folds", type=int, default=5, help="--cv: folds (default 5)")
    ap.add_argument("--repeats", type=int, default=2, help="--cv: repeats (default 2)")
    args = ap.parse_args(argv)
    rows = _rows(args.labeled / "dev", "dev") + _rows(args.labeled / "train", "train")
    if args.cv:
        print(f"{len(rows)} tuning mails; rules alone:", flush=True)
        for part in ("all", "train", "dev"):
            some = [r for r in rows if part == "all" or r.source == part]
            print(f"  {part:<5}", fold_figures(some, [r.rules for r in some]), flush=True)
        baseline = None
        for setting in GRID:
            folds = cross_validate(rows, setting, args.folds, args.repeats)
            print(f"{setting} ({len(folds)} folds)", flush=True)
            print("\n".join(describe(folds, baseline)), flush=True)
            baseline = baseline or folds
        return 0
    model = train_model(rows)
    args.out.write_text(model.to_json() + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(rows)} examples)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
