"""Train the linear model shipped in the package (``mailtriage/rules/model.json``).

    python -m mailtriage.triage.ship [--labeled tests/labeled] [--cv] [--out FILE]

Examples: every mail of ``dev/`` and those of ``train/`` not named in
``train/holdout.txt`` (the holdout is never read here). Each example is classified by the
default rules alone; the model learns category, level and priority from the words plus
the rules' decisions and the impact facts (:mod:`mailtriage.pipeline.classify.linear`).
``--cv`` prints 5-fold cross-validated figures (rules alone against rules + model) on the
train part, where the rules were never tuned, for each setting of the grid, and writes
nothing. Needs scikit-learn (the ``[dev]``/``[ml]`` extras); running the shipped model
does not. Deterministic: the same data give the same file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mailtriage.evaluation import holdout_files, label_metrics, read_labels
from mailtriage.pipeline.classify import ClassifierInput, classify, scoring
from mailtriage.pipeline.classify.linear import LabelModel, LinearModel, tokens
from mailtriage.pipeline.classify.scoring import combine_features, decide_by_rules
from mailtriage.triage.eml import parse_input
from mailtriage.triage.rules_file import load_rules

__all__ = ["main", "train_model"]

LABELS = ("category", "priority")  # the level follows from the category by the rules
SCORED = ("category", "level", "priority")
DEFAULT_C = 32.0
DEFAULT_META_WEIGHTS = {"category": 0.1, "priority": 0.5}
# (C, meta weight of category and level (priority: twice that), dev weight), each run
# with 5-fold cross-validation on the train/ part outside the holdout; the first grid
# (C 2-32, meta 0.05-2, dev 0.3/1) led to the defaults. Issue 15's second round (priority
# only: C 4-128, priority meta weight 0.25-2, dev weight 0-1, word vs character grams,
# more impact facts, fact conjunctions, ordinal models, facts-only blends) was flat
# within 0.74-0.79 priority exact in cross-validation, and the best of it (0.775) left
# the holdout at 0.68 and took the check set from 0.79 to 0.71: not kept.
GRID = ((32.0, 0.1, 0.3, 0.2, 0.0), (32.0, 0.1, 0.3, 0.2, 0.1), (32.0, 0.1, 0.3, 0.3, 0.0))
DEFAULT_DEV_WEIGHT = 0.3
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
    rows: Sequence[Row], c: float, meta_weights: Mapping[str, float], dev_weight: float
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


def _figures(rows: Sequence[Row], predicted: Sequence[dict[str, str]]) -> str:
    out = []
    for label in SCORED:
        m = label_metrics([r.gold[label] for r in rows], [p[label] for p in predicted])
        out.append(f"{label} acc {m.accuracy:.3f} F1 {m.macro_f1:.3f}")
    order = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
    within = sum(
        abs(order[r.gold["priority"]] - order[p["priority"]]) <= 1
        for r, p in zip(rows, predicted, strict=True)
    ) / max(1, len(rows))
    return "; ".join(out) + f"; prio within one {within:.3f}"


def cross_validate(
    rows: Sequence[Row],
    c: float,
    meta_weights: Mapping[str, float],
    dev_weight: float,
    folds: int = 5,
) -> str:
    """Cross-validated figures of the whole classifier (rules + a model that never saw
    the scored mails) on the ``train`` rows."""
    rules = load_rules(with_model=False)
    predicted: dict[int, dict[str, str]] = {}
    train_idx = [i for i, r in enumerate(rows) if r.source == "train"]
    for k in range(folds):
        test = set(train_idx[k::folds])
        model = train_model(
            [r for i, r in enumerate(rows) if i not in test], c, meta_weights, dev_weight
        )
        with_model = replace(rules, model=model)
        for i in test:
            got = classify(rows[i].inp, with_model)
            predicted[i] = {"category": got.category, "level": got.level}
            predicted[i]["priority"] = got.priority
    scored = [rows[i] for i in train_idx]
    return _figures(scored, [predicted[i] for i in train_idx])


def main(argv: Sequence[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[3]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labeled", type=Path, default=root / "tests" / "labeled")
    ap.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "rules/model.json")
    ap.add_argument("--cv", action="store_true", help="cross-validate a grid, write nothing")
    args = ap.parse_args(argv)
    rows = _rows(args.labeled / "dev", "dev") + _rows(args.labeled / "train", "train")
    if args.cv:
        train_rows = [r for r in rows if r.source == "train"]
        print("rules alone      ", _figures(train_rows, [r.rules for r in train_rows]), flush=True)
        for c, w, d, p, margin in GRID:
            weights = {"category": w, "priority": 5 * w}
            scoring.MIN_CATEGORY_P = p
            scoring.MIN_CATEGORY_MARGIN = margin
            figures = cross_validate(rows, c, weights, d)
            print(f"C={c} meta={w} dev={d} min_p={p} margin={margin}", figures, flush=True)
        return 0
    model = train_model(rows)
    args.out.write_text(model.to_json() + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(rows)} examples)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
