"""Corrections (`tickets set`) and reclassification (`tickets reclassify`), as an agent
uses them: through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from conftest import CLI
from mails import mail

# Mail about a customer's own export job: words the default rules do not know, so the
# rules fall back to "other".
ZORBLAT = [
    ("Zorblat nach Brixa", "Hallo, der Zorblat-Lauf nach Brixa ist heute Nacht wieder leer."),
    ("Zorblat-Lauf", "Guten Tag, unser Zorblat-Lauf Richtung Brixa kam heute ohne Inhalt an."),
]


def _import(cli: CLI, tmp_path: Path, mails: list[tuple[str, str]]) -> list[str]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for i, (subject, body) in enumerate(mails):
        (folder / f"{i:03d}.eml").write_bytes(mail(subject=subject, body=body))
    assert cli.json("import", str(folder))["created"] == len(mails)
    return [t["number"] for t in sorted(cli.json("tickets", "list"), key=lambda t: t["id"])]


def _error_line(code: int, err: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_set_corrects_labels_and_records_who(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [number] = _import(cli, tmp_path, ZORBLAT[:1])
    assert cli.json("tickets", "show", number)["category"] == "other"

    monkeypatch.setenv("USER", "bob")
    out = cli.json("tickets", "set", number, "--category", "integration", "--level", "L2")
    assert out["number"] == number
    assert out["by"] == "bob"
    assert out["before"]["category"] == "other" and out["before"]["level"] == "L1"
    assert out["after"] == out["before"] | {"category": "integration", "level": "L2"}
    assert out["changed"] == ["level", "category"]

    ticket = cli.json("tickets", "show", number)
    assert (ticket["level"], ticket["category"]) == ("L2", "integration")
    assert ticket["confidence"] == 1.0
    assert "category=integration: corrected by bob (was other)" in ticket["classification_reasons"]
    assert not any(r.startswith("category=other") for r in ticket["classification_reasons"])
    [event] = [e for e in ticket["events"] if e["kind"] == "corrected"]
    assert event["actor"] == "bob"
    assert event["detail"]["after"]["category"] == "integration"
    assert event["detail"]["before"]["category"] == "other"

    # --by wins; without $USER the actor is "cli"; the text output says what changed
    code, text, _ = cli("tickets", "set", number, "--priority", "high", "--by", "alice")
    assert code == 0 and f"{number} corrected by alice: priority" in text
    monkeypatch.delenv("USER")
    code, text, _ = cli("tickets", "set", number, "--priority", "high")
    assert code == 0 and "confirmed by cli" in text and "nothing changed" in text
    events = [e for e in cli.json("tickets", "show", number)["events"] if e["kind"] == "corrected"]
    assert [e["actor"] for e in events] == ["bob", "alice", "cli"]


BAD_VALUES = [
    (["--level", "L4"], "--level: 'L4' is not one of L1, L2, L3"),
    (["--priority", "asap"], "--priority: 'asap' is not one of high, low, normal, urgent"),
    (["--language", "fr"], "--language: 'fr' is not one of de, en, other"),
    (["--category", "printer"], "--category: 'printer' is not one of account_access, "),
    ([], "nothing to set"),
]


def test_set_rejects_values_outside_the_taxonomy(cli: CLI, tmp_path: Path) -> None:
    [number] = _import(cli, tmp_path, ZORBLAT[:1])
    for args, expected in BAD_VALUES:
        # a valid label next to a bad one: nothing is applied
        given = ["--level", "L2", *args] if args else []
        line = _error_line(*cli("tickets", "set", number, *given)[::2])
        assert line.startswith("mailtriage: error: ") and expected in line, args
        if args and args[0] == "--category":
            assert "integration" in line and "severe_error" in line  # every category named
    ticket = cli.json("tickets", "show", number)
    assert ticket["level"] == "L1"
    assert not [e for e in ticket["events"] if e["kind"] == "corrected"]
    line = _error_line(*cli("tickets", "set", "DM-000099", "--level", "L2")[::2])
    assert "no ticket DM-000099" in line


def test_reclassify_applies_new_rules_but_keeps_corrections(
    cli: CLI, tmp_path: Path, config_file: Path
) -> None:
    first, second = _import(cli, tmp_path, ZORBLAT)
    cli.json("tickets", "set", first, "--category", "data_issue", "--by", "alice")

    # An agent teaches the rules the customer's export job (rules live in config).
    rules = tmp_path / "rules.toml"
    default = resources.files("mailtriage").joinpath("rules/default.toml").read_text("utf-8")
    rules.write_text(
        default + '\n[[categories.integration.signals]]\nweight = 3.0\nany = ["zorblat"]\n',
        encoding="utf-8",
    )
    config_file.write_text(
        config_file.read_text() + f'[triage]\nrules_file = "{rules}"\n', encoding="utf-8"
    )

    code, out, err = cli("tickets", "reclassify", "--all")
    assert code == 0, err
    assert f"{first} skipped: corrected by alice; --force overrides" in out
    assert f"{second} reclassified: level L1 -> L2, category other -> integration" in out
    assert "reclassified=1 unchanged=0 skipped=1" in out

    kept = cli.json("tickets", "show", first)
    assert kept["category"] == "data_issue"
    changed = cli.json("tickets", "show", second)
    assert (changed["category"], changed["level"]) == ("integration", "L2")
    assert any("'zorblat'" in r for r in changed["classification_reasons"])
    [event] = [e for e in changed["events"] if e["kind"] == "reclassified"]
    assert event["detail"]["before"]["category"] == "other"
    assert event["detail"]["after"]["category"] == "integration"
    assert event["detail"]["reasons"] == changed["classification_reasons"]

    # again: nothing changes, no new event; one ticket as JSON
    [line] = cli("tickets", "reclassify", second, "--json")[1].splitlines()
    again = json.loads(line)
    assert again["outcome"] == "unchanged" and again["changed"] == []
    assert (
        len(
            [
                e
                for e in cli.json("tickets", "show", second)["events"]
                if e["kind"] == "reclassified"
            ]
        )
        == 1
    )

    # --force overrides the human correction
    code, out, _ = cli("tickets", "reclassify", first, "--force")
    assert (
        code == 0
        and f"{first} reclassified: level L1 -> L2, category data_issue -> integration" in out
    )


def test_reclassify_needs_one_target(cli: CLI) -> None:
    assert "give a ticket NUMBER or --all" in _error_line(*cli("tickets", "reclassify")[::2])
    line = _error_line(*cli("tickets", "reclassify", "7", "--all")[::2])
    assert "give a ticket NUMBER or --all" in line
    assert "no ticket DM-000007" in _error_line(*cli("tickets", "reclassify", "7")[::2])
