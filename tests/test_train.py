"""`mailtriage train`: a statistical model learnt from agents' corrections plus the dev
set, used where the rules are weak, never making the dev-set figures worse."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from mailtriage.pipeline.classify import RulesCategory
from mailtriage.triage.model import Gate, decide, load_model
from mailtriage.triage.training import choose_gate

from conftest import CLI, LABELED
from mails import mail

DEV = LABELED / "dev"

# A customer's own export job ("Zorblat" to "Brixa"): words no rule knows, so the rules
# fall back to "other"; agents correct such tickets to integration.
ZORBLAT = [
    ("Zorblat nach Brixa", "Hallo, der Zorblat-Lauf nach Brixa ist heute Nacht wieder leer."),
    ("Zorblat-Lauf", "Guten Tag, unser Zorblat-Lauf Richtung Brixa kam heute ohne Inhalt an."),
    ("Brixa leer", "Hallo, Brixa hat vom Zorblat-Lauf nichts bekommen."),
    ("Zorblat", "Moin, Zorblat nach Brixa wieder ohne Inhalt, wie letzte Woche."),
    ("Zorblat Brixa", "Hallo, auch heute liefert Zorblat nichts an Brixa."),
    ("Lauf nach Brixa", "Hi, der naechtliche Zorblat nach Brixa war wieder leer."),
    ("Zorblat heute", "Hallo, Zorblat-Lauf nach Brixa: wieder nichts angekommen."),
]
NEW_ZORBLAT = ("Zorblat schon wieder", "Hallo, Zorblat nach Brixa schon wieder leer. Gruss Jan")


def _figures(report: dict[str, object]) -> dict[str, float]:
    labels: dict[str, dict[str, float]] = report["labels"]  # type: ignore[assignment]
    out = {f"{k}_{m}": v[m] for k, v in labels.items() for m in ("accuracy", "macro_f1")}
    out["priority_within_one"] = report["priority_within_one"]  # type: ignore[assignment]
    return out


def test_train_learns_from_corrections_and_keeps_the_dev_figures(
    cli: CLI, tmp_path: Path, config_file: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, (subject, body) in enumerate(ZORBLAT):
        (folder / f"{i}.eml").write_bytes(mail(subject=subject, body=body))
    cli.json("import", str(folder))
    tickets = sorted(cli.json("tickets", "list"), key=lambda t: t["id"])
    assert {t["category"] for t in tickets} == {"other"}

    before = cli.json("eval", str(DEV))
    assert before["model"] is None and before["rules"].endswith("default.toml")
    code, text, _ = cli("eval", "--corrections")
    assert code == 0 and "corrected tickets: none yet" in text

    for ticket in tickets[:-1]:  # the last one stays as it is
        cli.json(
            "tickets", "set", ticket["number"], "--category", "integration", "--level", "L2",
            "--priority", "high",
        )  # fmt: skip

    untrained = cli.json("eval", "--corrections")["corrections"]
    assert untrained["n"] == len(ZORBLAT) - 1 and untrained["with_model"] is None
    assert untrained["rules"]["labels"]["category"]["accuracy"] == 0.0

    trained = cli.json("train", "--dev", str(DEV))
    model_file = tmp_path / "var" / "model" / "category.pkl"
    assert trained["model"] == str(model_file) and model_file.is_file()
    assert (trained["dev_examples"], trained["corrections"]) == (150, len(ZORBLAT) - 1)
    assert "fell back" in trained["gate"]
    # the corrected priority is learnt too: the classifier's own would be the default
    assert trained["priority_gate"].startswith("p >= "), trained
    assert trained["priority_cross_validation"]["fixes"] >= 2
    assert trained["cross_validation"]["fixes"] > trained["cross_validation"]["breaks"]
    dev = trained["dev"]
    assert all(dev["with_model"][k] >= v for k, v in dev["rules"].items())

    after = cli.json("eval", str(DEV))
    assert after["model"]["path"] == str(model_file)
    assert after["model"]["corrections"] == len(ZORBLAT) - 1
    assert all(_figures(after)[k] >= v for k, v in _figures(before).items())
    code, text, _ = cli("eval", str(DEV))
    assert code == 0 and f"model {model_file} (trained" in text

    # what the corrections changed: the corrected tickets, scored against the agents'
    # labels by the rules alone and with the model trained on those corrections
    scored = cli.json("eval", "--corrections")["corrections"]
    assert scored["n"] == len(ZORBLAT) - 1
    assert scored["rules"]["labels"]["category"]["accuracy"] == 0.0
    assert scored["with_model"]["labels"]["category"]["accuracy"] == 1.0
    assert scored["changed"]["category"]["fixed"] == len(ZORBLAT) - 1
    now_right = {(r["ticket"], r["label"]) for r in scored["now_right"]}
    corrected = {t["number"] for t in tickets[:-1]}
    assert now_right == {(n, k) for n in corrected for k in ("category", "level", "priority")}
    assert all(r["rules"] in {"other", "L1", "low"} for r in scored["now_right"])
    assert scored["with_model"]["labels"]["priority"]["accuracy"] == 1.0
    code, text, _ = cli("eval", str(DEV), "--corrections")
    assert code == 0 and "corrected labels the model now gets right: 18" in text
    assert f"{tickets[0]['number']} category integration (rules: other)" in text
    code, _, err = cli("eval")
    assert code == 2 and "give a labelled DIR, or --corrections" in err

    # the ticket nobody corrected: reclassify uses the model now
    last = tickets[-1]["number"]
    [line] = cli("tickets", "reclassify", last, "--json")[1].splitlines()
    result = json.loads(line)
    assert result["outcome"] == "reclassified"
    assert (result["after"]["category"], result["after"]["level"]) == ("integration", "L2")
    assert result["after"]["priority"] == "high"
    assert any(r.startswith("priority=high: corrections model p=") for r in result["reasons"])
    assert result["reasons"][0].startswith("category=integration: model p=")
    assert "the rules fell back" in result["reasons"][0] and "'zorblat'" in result["reasons"][0]

    # new mail: the worker classifies with the model, and so does `classify`
    new = tmp_path / "new.eml"
    new.write_bytes(mail(subject=NEW_ZORBLAT[0], body=NEW_ZORBLAT[1]))
    cli.json("import", str(new))
    newest = cli.json("tickets", "list", "--limit", "1")[0]
    assert newest["category"] == "integration"
    [classified] = [json.loads(x) for x in cli("classify", str(new), "--json")[1].splitlines()]
    assert classified["category"] == "integration"

    # triage.use_model = false: the rules alone decide again
    config_file.write_text(config_file.read_text() + "[triage]\nuse_model = false\n")
    [classified] = [json.loads(x) for x in cli("classify", str(new), "--json")[1].splitlines()]
    assert classified["category"] == "other"


# ----------------------------------------------------------------------------- errors


@pytest.fixture
def sqlite_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/m.db"\n'
        f'[storage]\ndir = "{tmp_path}/var"\n[worker]\nprocesses = 1\n',
        encoding="utf-8",
    )
    return CLI(config, capsys)


def test_train_without_scikit_learn_says_how_to_install(
    sqlite_cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    code, out, err = sqlite_cli("train", "--dev", str(DEV))
    assert code == 2 and out == ""
    assert err == ("mailtriage: error: training needs scikit-learn: pip install 'mailtriage[ml]'\n")


def test_train_needs_labelled_examples(sqlite_cli: CLI, tmp_path: Path) -> None:
    code, _, err = sqlite_cli("train", "--dev", str(tmp_path))
    assert code == 2 and "no labels.jsonl" in err and len(err.splitlines()) == 1
    few = tmp_path / "few"
    few.mkdir()
    rows = [json.loads(x) for x in (DEV / "labels.jsonl").read_text().splitlines()[:3]]
    for row in rows:
        (few / row["file"]).write_bytes((DEV / row["file"]).read_bytes())
    (few / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, _, err = sqlite_cli("train", "--dev", str(few))
    assert code == 2 and "too few examples to train on: 3" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "var" / "model").exists()


def test_a_model_without_scikit_learn_is_ignored_with_one_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "category.pkl"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with caplog.at_level(logging.WARNING, logger="mailtriage.triage.model"):
        assert load_model(path) is None
        assert load_model(path) is None
    assert len(caplog.records) == 1
    assert "scikit-learn is not installed" in caplog.records[0].getMessage()
    assert load_model(tmp_path / "missing.pkl") is None  # not trained: no log line
    assert len(caplog.records) == 1


# ----------------------------------------------------------------------------- the gate


def _view(category: str, confidence: float, ranked: list[tuple[str, float]]) -> RulesCategory:
    return RulesCategory(category, confidence, category != ranked[0][0], tuple(ranked))


FALLBACK = _view("other", 0.2, [("network", 1.0), ("integration", 0.5)])
WEAK = _view("network", 0.25, [("network", 4.0), ("integration", 1.0)])
TIE = _view("network", 0.55, [("network", 4.0), ("integration", 3.8)])
SURE = _view("network", 0.9, [("network", 9.0), ("integration", 0.5)])
GATE = Gate(fallback_min_p=0.5, weak_confidence=0.3, weak_min_p=0.6, tie_margin=0.1)


@pytest.mark.parametrize(
    ("view", "proba", "expected"),
    [
        (FALLBACK, {"integration": 0.7, "network": 0.3}, "integration"),
        (FALLBACK, {"integration": 0.4, "network": 0.3}, None),  # model not sure enough
        (WEAK, {"integration": 0.65, "network": 0.35}, "integration"),
        (WEAK, {"integration": 0.55, "network": 0.45}, None),
        (TIE, {"integration": 0.4, "network": 0.3, "other": 0.3}, "integration"),
        (TIE, {"integration": 0.2, "network": 0.3, "other": 0.5}, None),  # only the top two
        (SURE, {"integration": 0.99, "network": 0.01}, None),  # confident rules decide
    ],
)
def test_gate_decides_only_where_the_rules_are_weak(
    view: RulesCategory, proba: dict[str, float], expected: str | None
) -> None:
    decided = decide(view, proba, GATE)
    assert (decided[0] if decided else None) == expected
    assert decide(view, proba, Gate()) is None  # a closed gate never speaks


def test_gate_opens_only_for_net_fixes_in_cross_validation() -> None:
    views = [FALLBACK] * 4 + [SURE] * 4
    probas = [{"integration": 0.8, "other": 0.2}] * 4 + [{"integration": 0.9}] * 4
    gate, score = choose_gate(views, probas, ["integration"] * 3 + ["other"] * 5)
    assert gate.fallback_min_p is not None and (score.fixes, score.breaks) == (3, 1)
    assert gate.weak_min_p is None and gate.tie_margin is None  # SURE: rules right
    gate, _ = choose_gate(views, probas, ["integration"] + ["other"] * 7)
    assert not gate.active  # fixes one, breaks three: stays closed
