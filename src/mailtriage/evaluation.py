"""Score the classifier against a labelled directory (``*.eml`` + ``labels.jsonl``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from mailtriage.pipeline.classify import (
    PRIORITIES,
    CategoryModel,
    Classification,
    ClassifierInput,
    Rules,
    classify,
)
from mailtriage.triage.eml import classify_file

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "LABEL_KEYS",
    "CorrectionsEval",
    "DirectoryEval",
    "EvalReport",
    "LabelMetrics",
    "Prediction",
    "changed_labels",
    "eval_corrections",
    "eval_directory",
    "evaluate",
    "evaluate_predictions",
    "holdout_files",
    "label_metrics",
    "render_corrections",
    "render_eval",
    "render_table",
    "split_report",
    "summary",
]

LABEL_KEYS = ("level", "category", "priority", "language")


@dataclass(frozen=True)
class LabelMetrics:
    accuracy: float
    macro_f1: float
    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]  # rows: gold label, columns: predicted label
    per_label_f1: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_label_f1": dict(self.per_label_f1),
            "confusion": {"labels": list(self.labels), "matrix": [list(r) for r in self.matrix]},
        }


@dataclass(frozen=True)
class Prediction:
    file: str
    gold: dict[str, str]
    predicted: dict[str, str] | None  # None when the file could not be classified
    error: str = ""
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalReport:
    n: int
    labels: dict[str, LabelMetrics]
    priority_within_one: float
    predictions: tuple[Prediction, ...] = ()
    errors: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "errors": self.errors,
            "labels": {k: v.to_dict() for k, v in self.labels.items()},
            "priority_within_one": self.priority_within_one,
        }


def label_metrics(gold: Sequence[str], predicted: Sequence[str]) -> LabelMetrics:
    """Accuracy, macro-F1 (over labels present in gold or predicted) and confusion matrix.

    A label that never occurs in gold but is predicted counts with F1 0 (as in
    scikit-learn's default); one that is neither gold nor predicted is left out.
    """
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    labels = tuple(sorted(set(gold) | set(predicted)))
    index = {lab: i for i, lab in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g]][index[p]] += 1
    n = len(gold)
    correct = sum(matrix[i][i] for i in range(len(labels)))
    f1s: dict[str, float] = {}
    for lab, i in index.items():
        tp = matrix[i][i]
        fp = sum(matrix[r][i] for r in range(len(labels))) - tp
        fn = sum(matrix[i]) - tp
        f1s[lab] = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return LabelMetrics(
        accuracy=round(correct / n, 4) if n else 0.0,
        macro_f1=round(sum(f1s.values()) / len(f1s), 4) if f1s else 0.0,
        labels=labels,
        matrix=tuple(tuple(r) for r in matrix),
        per_label_f1={k: round(v, 4) for k, v in f1s.items()},
    )


def within_one(gold: Sequence[str], predicted: Sequence[str]) -> float:
    order = {p: i for i, p in enumerate(PRIORITIES)}
    pairs = list(zip(gold, predicted, strict=True))
    if not pairs:
        return 0.0
    ok = sum(1 for g, p in pairs if g in order and p in order and abs(order[g] - order[p]) <= 1)
    return round(ok / len(pairs), 4)


def evaluate_predictions(predictions: Iterable[Prediction]) -> EvalReport:
    """Metrics over predictions. An unclassifiable file counts as wrong for every label
    (its prediction is recorded as "<error>")."""
    preds = tuple(predictions)
    labels: dict[str, LabelMetrics] = {}
    for key in LABEL_KEYS:
        gold = [p.gold[key] for p in preds]
        got = [(p.predicted or {}).get(key, "<error>") for p in preds]
        labels[key] = label_metrics(gold, got)
    within = within_one(
        [p.gold["priority"] for p in preds],
        [(p.predicted or {}).get("priority", "<error>") for p in preds],
    )
    return EvalReport(
        n=len(preds),
        labels=labels,
        priority_within_one=within,
        predictions=preds,
        errors=sum(1 for p in preds if p.predicted is None),
    )


def read_labels(directory: Path) -> list[dict[str, str]]:
    """Read ``labels.jsonl``; every line needs file and the four labels."""
    path = Path(directory) / "labels.jsonl"
    rows: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in ("file", *LABEL_KEYS) if k not in row]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing {', '.join(missing)}")
            rows.append({k: str(v) for k, v in row.items()})
    return rows


HOLDOUT_FILE = "holdout.txt"


def holdout_files(directory: Path) -> frozenset[str]:
    """The file names listed in ``directory/holdout.txt``: labelled mail kept out of every
    tuning step (rules and models), scored apart. Empty when there is no such file."""
    path = Path(directory) / HOLDOUT_FILE
    if not path.is_file():
        return frozenset()
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(x.strip() for x in lines if x.strip() and not x.startswith("#"))


def split_report(report: EvalReport, holdout: Collection[str]) -> dict[str, EvalReport]:
    """The report on the tuning part and on the holdout part of a directory."""
    if not holdout:
        return {}
    preds = report.predictions
    return {
        "tuning": evaluate_predictions(p for p in preds if p.file not in holdout),
        "holdout": evaluate_predictions(p for p in preds if p.file in holdout),
    }


def changed_labels(before: EvalReport, after: EvalReport) -> dict[str, dict[str, int]]:
    """Per label: how many predictions ``after`` changed, fixed and broke against
    ``before`` (the same files; e.g. without and with the corrections-trained model)."""
    prior = {p.file: p for p in before.predictions}
    out: dict[str, dict[str, int]] = {}
    for key in LABEL_KEYS:
        changed = fixed = broke = 0
        for p in after.predictions:
            q = prior.get(p.file)
            if q is None or p.predicted is None or q.predicted is None:
                continue
            if p.predicted[key] != q.predicted[key]:
                changed += 1
                fixed += p.predicted[key] == p.gold[key]
                broke += q.predicted[key] == q.gold[key]
        out[key] = {"changed": changed, "fixed": fixed, "broke": broke}
    return out


def summary(report: EvalReport) -> str:
    """One line: the figures the issue tracks."""
    m = report.labels
    return (
        f"n {report.n}  level F1 {m['level'].macro_f1:.2f}  category {m['category'].accuracy:.2f}"
        f"  priority {m['priority'].accuracy:.2f} (within one {report.priority_within_one:.2f})"
        f"  language {m['language'].accuracy:.2f}"
    )


def evaluate(
    directory: Path,
    rules: Rules,
    classify_path: Callable[[Path, Rules], Classification] | None = None,
    *,
    model: CategoryModel | None = None,
) -> EvalReport:
    """Classify every labelled ``.eml`` in ``directory`` and score the result.

    ``classify_path`` exists so tests can substitute the MIME layer; by default it is
    :func:`classify_file` with ``model`` (a trained model complementing the rules).
    """
    directory = Path(directory)
    if classify_path is None:
        classify_path = partial(classify_file, model=model)
    preds: list[Prediction] = []
    for row in read_labels(directory):
        gold = {k: row[k] for k in LABEL_KEYS}
        try:
            c = classify_path(directory / row["file"], rules)
        except Exception as exc:  # one broken file must not stop the evaluation
            preds.append(Prediction(row["file"], gold, None, error=f"{type(exc).__name__}: {exc}"))
            continue
        preds.append(Prediction(row["file"], gold, predicted_labels(c), reasons=c.reasons))
    return evaluate_predictions(preds)


@dataclass(frozen=True)
class DirectoryEval:
    """One labelled directory scored: all of it, its tuning and holdout parts (when it
    has a ``holdout.txt``), and what the corrections-trained model changed (when one is
    used: the same directory scored without it)."""

    directory: Path
    report: EvalReport
    parts: dict[str, EvalReport]
    without_model: EvalReport | None = None

    def corrections_changed(self) -> dict[str, dict[str, int]] | None:
        if self.without_model is None:
            return None
        return changed_labels(self.without_model, self.report)

    def to_dict(self) -> dict[str, object]:
        return self.report.to_dict() | {
            "parts": {name: r.to_dict() for name, r in self.parts.items()},
            "corrections_model_changed": self.corrections_changed(),
        }


def eval_directory(
    directory: Path, rules: Rules, model: CategoryModel | None = None
) -> DirectoryEval:
    report = evaluate(directory, rules, model=model)
    return DirectoryEval(
        directory=Path(directory),
        report=report,
        parts=split_report(report, holdout_files(directory)),
        without_model=None if model is None else evaluate(directory, rules),
    )


def render_eval(result: DirectoryEval, console: Console, tables: bool = True) -> None:
    """The tables (optional), then one summary line for the directory and each part."""
    if tables:
        render_table(result.report, console)
    console.print(f"{result.directory}: {summary(result.report)}", highlight=False)
    for name, part in result.parts.items():
        console.print(f"  {name:<8} {summary(part)}", highlight=False)
    changed = result.corrections_changed()
    if changed is not None:
        console.print("  corrections-trained model, against the rules alone:", highlight=False)
        for key, c in changed.items():
            console.print(
                f"    {key}: {c['changed']} changed, {c['fixed']} fixed, {c['broke']} broke",
                highlight=False,
            )


@dataclass(frozen=True)
class CorrectionsEval:
    """The agents' corrected tickets scored against their corrected labels: by the rules
    alone (what the tickets got before) and by the rules with the corrections-trained
    model (when one is used), and each corrected label that model now gets right."""

    rules: EvalReport
    with_model: EvalReport | None
    now_right: tuple[dict[str, str], ...]  # ticket, label, corrected, rules' label
    still_wrong: tuple[dict[str, str], ...]  # ticket, label, corrected, model's label

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.rules.n,
            "rules": self.rules.to_dict(),
            "with_model": None if self.with_model is None else self.with_model.to_dict(),
            "changed": None
            if self.with_model is None
            else changed_labels(self.rules, self.with_model),
            "now_right": list(self.now_right),
            "still_wrong": list(self.still_wrong),
        }


def predicted_labels(c: Classification) -> dict[str, str]:
    return {
        "level": c.level,
        "category": c.category,
        "priority": c.priority,
        "language": c.language,
    }


def eval_corrections(
    examples: Sequence[tuple[str, ClassifierInput, dict[str, str]]],
    rules: Rules,
    model: CategoryModel | None = None,
) -> CorrectionsEval:
    """Score corrected tickets ``(number, input, corrected labels)``. Pure."""
    plain = [
        Prediction(n, gold, predicted_labels(classify(inp, rules))) for n, inp, gold in examples
    ]
    if model is None:
        return CorrectionsEval(evaluate_predictions(plain), None, (), ())
    modelled = [
        Prediction(n, gold, predicted_labels(classify(inp, rules, model)))
        for n, inp, gold in examples
    ]
    now_right: list[dict[str, str]] = []
    still_wrong: list[dict[str, str]] = []
    for before, after in zip(plain, modelled, strict=True):
        assert before.predicted is not None and after.predicted is not None
        for key in LABEL_KEYS:
            gold = before.gold[key]
            row = {"ticket": before.file, "label": key, "corrected": gold}
            if before.predicted[key] != gold and after.predicted[key] == gold:
                now_right.append(row | {"rules": before.predicted[key]})
            elif after.predicted[key] != gold:
                still_wrong.append(row | {"model": after.predicted[key]})
    return CorrectionsEval(
        evaluate_predictions(plain),
        evaluate_predictions(modelled),
        tuple(now_right),
        tuple(still_wrong),
    )


def render_corrections(result: CorrectionsEval, console: Console) -> None:
    """Figures on the corrected tickets without and with the corrections-trained model,
    then the corrected labels it now gets right."""
    n = result.rules.n
    if not n:
        console.print(
            "corrected tickets: none yet (`tickets set`, or #level/#category/#priority "
            "in an agent's reply)",
            highlight=False,
        )
        return
    console.print(f"corrected tickets (gold: the agents' labels): {n}", highlight=False)
    console.print(f"  rules alone       {summary(result.rules)}", highlight=False)
    if result.with_model is None:
        console.print("  no corrections-trained model (run `mailtriage train`)", highlight=False)
        return
    console.print(f"  rules + model     {summary(result.with_model)}", highlight=False)
    console.print(
        f"  corrected labels the model now gets right: {len(result.now_right)}; "
        f"still wrong: {len(result.still_wrong)}",
        highlight=False,
    )
    for row in result.now_right:
        console.print(
            f"    {row['ticket']} {row['label']} {row['corrected']} (rules: {row['rules']})",
            highlight=False,
        )


def render_table(report: EvalReport, console: Console) -> None:
    """Print per-label metrics, confusion matrices, then the summary lines last."""
    from rich.table import Table

    for key in LABEL_KEYS:
        m = report.labels[key]
        table = Table(title=f"{key}: rows gold, columns predicted", title_justify="left")
        table.add_column("gold \\ pred", style="bold")
        for lab in m.labels:
            table.add_column(lab[:10], justify="right")
        table.add_column("F1", justify="right")
        for lab, row in zip(m.labels, m.matrix, strict=True):
            i = m.labels.index(lab)
            cells = [
                (f"[green]{v}[/green]" if j == i and v else (str(v) if v else "[dim]·[/dim]"))
                for j, v in enumerate(row)
            ]
            table.add_row(lab, *cells, f"{m.per_label_f1.get(lab, 0.0):.2f}")
        console.print(table)
    if report.errors:
        console.print(f"[red]{report.errors} file(s) could not be classified[/red]")
    console.print(f"n {report.n}")
    for key in LABEL_KEYS:
        m = report.labels[key]
        console.print(f"{key} accuracy {m.accuracy:.2f}  macro-F1 {m.macro_f1:.2f}")
    console.print(f"priority within one step {report.priority_within_one:.2f}")
