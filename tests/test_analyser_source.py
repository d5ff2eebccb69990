"""The runner loads what the pure pipeline needs, and reloads a model `train` replaced."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mailtriage.runners import analysis

from conftest import make_settings


def test_the_model_is_reloaded_when_its_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_file = tmp_path / "category.pkl"
    loads: list[int | None] = []

    def fake_load(path: str, mtime: int | None) -> Any:
        loads.append(mtime)
        return None if mtime is None else f"model@{mtime}"

    monkeypatch.setattr(analysis, "_load_model", fake_load)
    settings = make_settings(tmp_path, triage={"use_model": True, "model_file": str(model_file)})
    source = analysis.AnalyserSource(settings)
    assert source.current().model is None  # not trained yet
    model_file.write_bytes(b"v1")
    os.utime(model_file, ns=(1_000_000_000, 1_000_000_000))
    first = source.current()
    assert first.model == "model@1000000000"
    assert source.current() is first  # unchanged file: nothing loaded again
    os.utime(model_file, ns=(2_000_000_000, 2_000_000_000))  # `mailtriage train` replaced it
    assert source.current().model == "model@2000000000"
    assert loads == [1_000_000_000, 2_000_000_000]
    assert source.current().rules is first.rules  # the rules are loaded once


def test_without_use_model_no_model_file_is_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_load(path: str, mtime: int | None) -> Any:
        raise AssertionError(f"loaded {path}")

    monkeypatch.setattr(analysis, "_load_model", must_not_load)
    settings = make_settings(tmp_path, triage={"use_model": False})
    trained = settings.storage_dir / "model" / "category.pkl"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"a trained model")
    assert analysis.AnalyserSource(settings).current().model is None
