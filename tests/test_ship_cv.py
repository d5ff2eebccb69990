"""How the shipped model is chosen: cross-validation that never scores a mail with a
model trained on it, a holdout that never enters, and the stacked rule-feature scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mailtriage.evaluation import holdout_files

LABELED = Path(__file__).parent / "labeled"


def test_training_rows_never_include_the_holdout() -> None:
    pytest.importorskip("sklearn")
    from mailtriage.triage.ship import _rows

    rows = _rows(LABELED / "train", "train")
    holdout = holdout_files(LABELED / "train")
    assert len(holdout) == 100 and len(rows) == 200
    assert not {r.file for r in rows} & holdout


def test_cross_validation_scores_each_mail_with_a_model_that_never_saw_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("sklearn")
    from mailtriage.triage import ship

    rows = ship._rows(LABELED / "dev", "dev")[:30] + ship._rows(LABELED / "train", "train")[:30]
    trained: list[set[str]] = []  # the files each fold's model was trained on
    scored: list[tuple[int, str]] = []  # (model number, file) of each classified mail
    by_input = {id(r.inp): f"{r.source}/{r.file}" for r in rows}
    real_train, real_classify = ship.train_model, ship.classify

    def recording_train(fold_rows, *args, **kwargs):  # type: ignore[no-untyped-def]
        trained.append({f"{r.source}/{r.file}" for r in fold_rows})
        return real_train(fold_rows, *args, **kwargs)

    def recording_classify(inp, rules, model=None):  # type: ignore[no-untyped-def]
        scored.append((len(trained) - 1, by_input[id(inp)]))
        return real_classify(inp, rules, model)

    monkeypatch.setattr(ship, "train_model", recording_train)
    monkeypatch.setattr(ship, "classify", recording_classify)
    folds = ship.cross_validate(rows, ship.Setting(), folds=3, repeats=2)

    assert len(folds) == len(trained) == 6
    for model, file in scored:
        assert file not in trained[model]
    # every mail is scored once per repeat
    assert sorted(f for _, f in scored) == sorted(2 * [f"{r.source}/{r.file}" for r in rows])
    for fold in folds:
        assert set(fold) == {"all", "dev", "train"}
        assert 0.0 <= fold["all"]["priority"] <= 1.0


def test_describe_reports_the_paired_difference_and_its_noise() -> None:
    pytest.importorskip("sklearn")
    from mailtriage.triage.ship import describe

    def fold(priority: float) -> dict[str, dict[str, float]]:
        figures = {"level_f1": 0.9, "category": 0.8, "priority": priority, "within_one": 1.0}
        return {part: figures for part in ("all", "train", "dev")}

    base = [fold(0.70), fold(0.80)]
    other = [fold(0.75), fold(0.95)]
    [line, *_] = describe(other, base)
    mean, std = np.mean([0.05, 0.15]), np.std([0.05, 0.15])
    assert f"priority 0.850+-0.100 ({mean:+.3f}+-{std:.3f})" in line
    assert "category 0.800+-0.000 (+0.000+-0.000)" in line
