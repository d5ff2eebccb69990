"""The packaged linear model, loaded fast: a parsed copy in the user's cache directory.

``rules/model.json`` is 1.6 MB of JSON, mostly the coefficients as decimal numbers;
parsing it is about 55 ms of every start (and of every worker process). The first start
writes it as a small JSON file (vocabulary, idf, labels) plus the coefficient arrays as
``.npy`` under ``<cache dir>/linear-<sha256 of model.json>/`` (the cache directory of
the language model, :mod:`mailtriage.cache_dir`); later starts read that in about 5 ms.
The name carries the hash of the packaged file, so a new model writes a new copy. A
cache that cannot be read or written is skipped, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from mailtriage.cache_dir import default_cache_dir, publish_directory
from mailtriage.pipeline.classify.linear import LabelModel, LinearModel

__all__ = ["cached_model"]

log = logging.getLogger(__name__)


def cached_model(raw: bytes, cache_dir: Path | None = None) -> LinearModel:
    """The model of ``raw`` (the bytes of a model.json), from the cache when it has it.

    Raises what :meth:`LinearModel.from_json` raises for an unusable model."""
    directory = cache_dir or default_cache_dir()
    if directory is None:
        return LinearModel.from_json(raw.decode("utf-8"))
    path = directory / f"linear-{hashlib.sha256(raw).hexdigest()[:24]}"
    if path.is_dir():
        try:
            return _read(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.info("model cache %s unusable (%s): rebuilt", path, exc)
            shutil.rmtree(path, ignore_errors=True)
    model = LinearModel.from_json(raw.decode("utf-8"))
    try:
        _write(path, model)
    except OSError as exc:
        log.info("model cache %s not written: %s", path, exc)
    return model


def _write(path: Path, model: LinearModel) -> None:
    def fill(tmp: Path) -> None:
        labels = list(model.labels.items())
        meta = {
            "vocabulary": model.vocabulary,
            "idf": list(model.idf),
            "meta": model.meta,
            "meta_weight": model.meta_weight,
            "info": model.info,
            "labels": [[name, list(lab.classes)] for name, lab in labels],
        }
        (tmp / "model.json").write_text(json.dumps(meta), encoding="utf-8")
        for i, (_, lab) in enumerate(labels):
            np.save(tmp / f"coef-{i}.npy", lab.coef, allow_pickle=False)
            np.save(tmp / f"intercept-{i}.npy", lab.intercept, allow_pickle=False)

    publish_directory(path, fill)


def _read(path: Path) -> LinearModel:
    meta = json.loads((path / "model.json").read_text(encoding="utf-8"))
    labels = {
        name: LabelModel(
            classes=tuple(classes),
            coef=np.load(path / f"coef-{i}.npy", allow_pickle=False),
            intercept=np.load(path / f"intercept-{i}.npy", allow_pickle=False),
        )
        for i, (name, classes) in enumerate(meta["labels"])
    }
    return LinearModel(
        meta["vocabulary"],
        meta["idf"],
        meta["meta"],
        float(meta["meta_weight"]),
        labels,
        meta["info"],
    )
