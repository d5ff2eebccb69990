"""The packaged linear model is read from a parsed copy in the cache directory: the same
model as parsing rules/model.json (55 ms of every start), in a few milliseconds."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from mailtriage.pipeline.classify.linear import LinearModel
from mailtriage.triage import model_cache
from mailtriage.triage.model_cache import cached_model

RAW = resources.files("mailtriage").joinpath("rules/model.json").read_bytes()


def same(a: LinearModel, b: LinearModel) -> None:
    assert a.vocabulary == b.vocabulary
    assert a.idf == b.idf
    assert a.meta == b.meta
    assert a.meta_weight == b.meta_weight
    assert a.info == b.info
    assert list(a.labels) == list(b.labels)
    for name, lab in a.labels.items():
        other = b.labels[name]
        assert lab.classes == other.classes
        assert lab.coef.dtype == other.coef.dtype == np.float64
        assert np.array_equal(lab.coef, other.coef)
        assert np.array_equal(lab.intercept, other.intercept)


def test_the_cached_model_is_the_packaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = LinearModel.from_json(RAW.decode("utf-8"))
    first = cached_model(RAW, tmp_path)  # parses and writes the copy
    [directory] = tmp_path.iterdir()
    assert directory.name.startswith("linear-")

    def no_parsing(_text: str) -> LinearModel:
        raise AssertionError("parsed model.json although the cache has it")

    monkeypatch.setattr(LinearModel, "from_json", staticmethod(no_parsing))
    second = cached_model(RAW, tmp_path)  # read from the copy
    same(packaged, first)
    same(packaged, second)
    texts = [
        "hallo, der export bricht seit heute morgen mit einem fehler ab, alle nutzer betroffen",
        "please reset my password, i cannot log in",
    ]
    for text in texts:
        meta = {"rules.level=L1": 1.0}
        for name in packaged.labels:
            expected = packaged.predict(name, packaged.vector(text, meta))
            assert second.predict(name, second.vector(text, meta)) == expected


def test_a_broken_copy_is_rebuilt_and_another_model_gets_its_own(tmp_path: Path) -> None:
    cached_model(RAW, tmp_path)
    [directory] = tmp_path.iterdir()
    (directory / "coef-0.npy").write_bytes(b"not an array")
    same(LinearModel.from_json(RAW.decode("utf-8")), cached_model(RAW, tmp_path))
    assert np.load(directory / "coef-0.npy").dtype == np.float64  # written again
    other = RAW.replace(b'"meta_weight":', b'"meta_weight": ', 1)
    assert other != RAW
    cached_model(other, tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_no_usable_cache_directory_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    same(LinearModel.from_json(RAW.decode("utf-8")), cached_model(RAW, blocked))
    monkeypatch.setattr(model_cache, "default_cache_dir", lambda: None)
    same(LinearModel.from_json(RAW.decode("utf-8")), cached_model(RAW))


def test_an_unusable_model_is_still_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        cached_model(b'{"format": 99}', tmp_path)
