"""The packaged linear model: JSON round trip, scoring without scikit-learn, reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mailtriage.pipeline.classify import classify, input_from_text
from mailtriage.pipeline.classify.linear import LabelModel, LinearModel, tokens
from mailtriage.triage.rules_file import load_rules

DEV = Path(__file__).parent / "labeled" / "dev"


def tiny_model() -> LinearModel:
    vocabulary = {g: i for i, g in enumerate(tokens("passwort vpn"))}
    n = len(vocabulary)
    meta = {"rules.category=how_to": n}
    coef = np.zeros((2, n + 1))
    coef[0, vocabulary[" pa"]] = 3.0  # account_access
    coef[1, vocabulary[" vp"]] = 3.0  # network
    coef[1, n] = 0.5
    label = LabelModel(("account_access", "network"), coef, np.zeros(2))
    return LinearModel(vocabulary, [1.0] * n, meta, 1.0, {"category": label})


def test_json_round_trip_scores_the_same() -> None:
    model = tiny_model()
    again = LinearModel.from_json(model.to_json())
    for text in ("mein passwort", "vpn geht nicht", "passwort und vpn"):
        vec_a = model.vector(text, {"rules.category=how_to": 1.0})
        vec_b = again.vector(text, {"rules.category=how_to": 1.0})
        assert model.predict("category", vec_a) == again.predict("category", vec_b)


def test_prediction_names_its_strongest_features() -> None:
    model = tiny_model()
    pred = model.predict("category", model.vector("der vpn tunnel", {}))
    assert pred.label == "network"
    assert " vp" in pred.features
    assert 0.5 < pred.probability <= 1.0
    pred = model.predict("category", model.vector("passwort vergessen", {}))
    assert pred.label == "account_access"


def test_packaged_model_is_loaded_with_the_default_rules() -> None:
    rules = load_rules()
    assert rules.model is not None
    # the level follows from the category by the rules (default level, level rules)
    assert set(rules.model.labels) == {"category", "priority"}
    assert load_rules(with_model=False).model is None


@pytest.mark.parametrize("name", sorted(p.name for p in DEV.glob("*.eml"))[:40])
def test_every_label_keeps_a_reason(name: str) -> None:
    from mailtriage.triage.eml import classify_file

    c = classify_file(DEV / name, load_rules())
    for label in ("category", "level", "priority", "language"):
        assert any(r.startswith(f"{label}=") for r in c.reasons), c.reasons
    for reason in c.reasons:
        if "model p=" in reason:
            assert "'" in reason  # the model's strongest features are named


def test_words_like_dringend_alone_do_not_make_it_urgent() -> None:
    rules = load_rules()
    c = classify(
        input_from_text("DRINGEND", "Dringend! Wo finde ich die Einstellung für die Sprache?"),
        rules,
    )
    assert c.priority in {"low", "normal"}


def test_packaged_model_is_reproduced_from_the_shipped_data(tmp_path: Path) -> None:
    """`python -m mailtriage.triage.ship` rebuilds rules/model.json from tests/labeled
    (dev + train outside the holdout): same features, same coefficients (to rounding, so
    another scikit-learn/NumPy build does not fail it)."""
    pytest.importorskip("sklearn")
    from importlib import resources

    from mailtriage.triage.ship import main

    out = tmp_path / "model.json"
    assert main(["--out", str(out)]) == 0
    shipped = LinearModel.from_json(
        resources.files("mailtriage").joinpath("rules/model.json").read_text("utf-8")
    )
    again = LinearModel.from_json(out.read_text("utf-8"))
    assert again.vocabulary == shipped.vocabulary and again.meta == shipped.meta
    assert np.allclose(again.idf, shipped.idf, atol=1e-4)
    for label, model in shipped.labels.items():
        assert again.labels[label].classes == model.classes
        assert np.allclose(again.labels[label].coef, model.coef, atol=2e-3)
        assert np.allclose(again.labels[label].intercept, model.intercept, atol=2e-3)


def test_vector_is_exactly_tf_idf_of_the_grams() -> None:
    """The word-cached vector has the same entries, in the same order, with the same
    floats as counting tokens() directly (the order decides the float sums)."""
    import math
    import pickle
    from collections import Counter

    from mailtriage.pipeline.classify import fold

    model = load_rules().model
    assert model is not None
    texts = [fold(p.read_text(errors="replace")) for p in sorted(DEV.glob("*.eml"))]
    texts += ["", "passwort passwort passwort vpn", "x" * 9000]
    for text in texts + texts:  # the second round from the cache
        counts = Counter(t for t in tokens(text) if t in model.vocabulary)
        ref = {
            model.vocabulary[t]: (1.0 + math.log(n)) * model.idf[model.vocabulary[t]]
            for t, n in counts.items()
        }
        norm = math.sqrt(sum(v * v for v in ref.values()))
        if norm > 0:
            ref = {i: v / norm for i, v in ref.items()}
        meta = {"rules.category=how_to": 1.0, "rules.score.how_to": 0.5, "unknown": 1.0}
        for name, value in meta.items():
            if name in model.meta:
                ref[model.meta[name]] = model.meta_weight * value
        vec = model.vector(text, meta)
        assert vec.index.tolist() == list(ref)
        assert vec.value.tolist() == list(ref.values())
    assert pickle.loads(pickle.dumps(model))._word_cache == {}


def test_a_model_with_a_meta_feature_on_a_gram_index_is_refused() -> None:
    """Training numbers meta features after the grams; a model file that does not is
    refused when it is loaded, not mixed up in every vector."""
    model = tiny_model()
    with pytest.raises(ValueError, match="meta features on gram indices"):
        LinearModel(
            model.vocabulary,
            model.idf,
            {**model.meta, "clash": model.vocabulary[" pa"]},
            model.meta_weight,
            model.labels,
        )
