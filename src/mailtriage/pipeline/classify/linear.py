"""A linear model that combines the rules' decisions with the words of a mail.

Stored as JSON (vocabulary, idf, coefficients), scored in plain Python: no scikit-learn
at run time, well under a millisecond a message. Trained by
``python -m mailtriage.triage.ship`` from the labelled mails shipped in ``tests/labeled``
(never from the holdout list); the packaged file is ``mailtriage/rules/model.json``.

Features of one message:

* character 3-5-grams of the words of the folded text the rules read (subject, new text, forwarded
  text, screenshot text), sublinear tf-idf, l2-normalised;
* *meta* features, each with the value ``meta_weight``: what the rules decided
  (``rules.category=how_to``, ``rules.level=L2``, ``rules.priority=high``) and the impact
  facts (``fact.blocked``, ``fact.no_workaround`` ...).

Every label it gives names its strongest features as reasons.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = ["Features", "LabelModel", "LinearModel", "Prediction", "meta_features", "tokens"]

MODEL_FORMAT = 1
MODEL_CHARS = 4000  # the model reads the start of the text: the problem is stated there
_WORD = re.compile(r"\w+")
_WORD_CACHE_SIZE = 200_000  # words whose features a model keeps (a few MB)


@lru_cache(maxsize=100_000)
def _grams(word: str) -> tuple[str, ...]:
    padded = f" {word} "
    return tuple(padded[i : i + n] for n in (3, 4, 5) for i in range(len(padded) - n + 1))


def _words(folded: str) -> list[str]:
    """The words of folded text the model reads (its first MODEL_CHARS characters)."""
    return _WORD.findall(folded[:MODEL_CHARS])


def tokens(folded: str) -> list[str]:
    """Character 3-5-grams of each word of folded text (the model's analyzer): they
    carry over between compounds and inflections ("passwortaenderung", "passwoerter")
    where whole words do not."""
    out: list[str] = []
    for word in _words(folded):
        out.extend(_grams(word))
    return out


def meta_features(
    category: str, level: str, priority: str, facts: Sequence[str]
) -> dict[str, float]:
    """The meta features (name -> value) of the rules' decisions and the impact facts."""
    names = [
        f"rules.category={category}",
        f"rules.level={level}",
        f"rules.priority={priority}",
        *(f"fact.{name}" for name in facts),
    ]
    return dict.fromkeys(names, 1.0)


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    features: tuple[str, ...]  # the strongest features for this label
    probabilities: Mapping[str, float] = field(default_factory=dict)  # every class


@dataclass(frozen=True, eq=False)
class LabelModel:
    classes: tuple[str, ...]
    coef: np.ndarray  # one row per class, one column per feature
    intercept: np.ndarray  # one per class


@dataclass(frozen=True, eq=False)
class Features:
    """A sparse feature vector."""

    index: np.ndarray
    value: np.ndarray


class LinearModel:
    """Multinomial logistic regression over tf-idf words plus meta features."""

    def __init__(
        self,
        vocabulary: Mapping[str, int],
        idf: Sequence[float],
        meta: Mapping[str, int],
        meta_weight: float,
        labels: Mapping[str, LabelModel],
        info: Mapping[str, object] | None = None,
    ) -> None:
        self.vocabulary = dict(vocabulary)
        self.idf = tuple(idf)
        self.meta = dict(meta)
        shared = set(self.vocabulary.values()) & set(self.meta.values())
        if shared:  # training numbers meta features after the grams
            raise ValueError(f"linear model: meta features on gram indices {sorted(shared)[:5]}")
        self.meta_weight = meta_weight
        self.labels = dict(labels)
        self.info = dict(info or {})
        self._names = {i: n for n, i in self.vocabulary.items()} | {
            i: n for n, i in self.meta.items()
        }
        self._word_cache: dict[str, tuple[int, ...]] = {}
        self._idf_array = np.asarray(self.idf, dtype=np.float64)
        self._tf_table = np.zeros(0, dtype=np.float64)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_word_cache"] = {}  # a pickled model (to a process pool) starts afresh
        return state

    # ------------------------------------------------------------------ (de)serialise

    @classmethod
    def from_json(cls, text: str) -> LinearModel:
        data = json.loads(text)
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"unknown linear model format {data.get('format')!r}")
        labels = {
            name: LabelModel(
                classes=tuple(lab["classes"]),
                coef=np.asarray(lab["coef"], dtype=np.float64),
                intercept=np.asarray(lab["intercept"], dtype=np.float64),
            )
            for name, lab in data["labels"].items()
        }
        return cls(
            data["vocabulary"],
            data["idf"],
            data["meta"],
            float(data["meta_weight"]),
            labels,
            data.get("info", {}),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MODEL_FORMAT,
                "info": self.info,
                "meta_weight": self.meta_weight,
                "vocabulary": self.vocabulary,
                "idf": [round(v, 5) for v in self.idf],
                "meta": self.meta,
                "labels": {
                    name: {
                        "classes": list(lab.classes),
                        "intercept": np.round(lab.intercept, 5).tolist(),
                        "coef": np.round(lab.coef, 4).tolist(),
                    }
                    for name, lab in self.labels.items()
                },
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    # ------------------------------------------------------------------ scoring

    def _word_features(self, word: str) -> tuple[int, ...]:
        """The vocabulary indices of a word's grams that are in the vocabulary, in the
        order of tokens() (cached per model: words repeat across mails)."""
        found = self._word_cache.get(word)
        if found is None:
            vocabulary = self.vocabulary
            found = tuple(vocabulary[g] for g in _grams(word) if g in vocabulary)
            if len(self._word_cache) < _WORD_CACHE_SIZE:
                self._word_cache[word] = found
        return found

    def vector(self, folded: str, meta: Mapping[str, float]) -> Features:
        """Sublinear tf-idf of the text's grams (l2-normalised) plus the meta features.

        The grams are counted as vocabulary indices in the order tokens() gives them, so
        the vector's entries (and the float sums over them) come in the same order as
        when counting the grams themselves."""
        indices: list[int] = []
        for word in _words(folded):
            indices += self._word_features(word)
        counts = Counter(indices)
        index = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        n = np.fromiter(counts.values(), dtype=np.intp, count=len(counts))
        # element-wise IEEE products and quotients, as the scalar code did them; the
        # norm's sum runs over a list, left to right, as before
        values = self._sublinear_tf(int(n.max(initial=0)))[n] * self._idf_array[index]
        norm = math.sqrt(sum((values * values).tolist()))
        if norm > 0:
            values = values / norm
        extra: dict[int, float] = {}
        for name, value in meta.items():
            if name in self.meta:
                extra[self.meta[name]] = self.meta_weight * value
        return Features(
            np.concatenate([index, np.fromiter(extra.keys(), dtype=np.intp, count=len(extra))]),
            np.concatenate(
                [values, np.fromiter(extra.values(), dtype=np.float64, count=len(extra))]
            ),
        )

    def _sublinear_tf(self, most: int) -> np.ndarray:
        """1 + log(n) for n = 0..most (index 0 unused), computed by math.log."""
        table = self._tf_table
        if len(table) <= most:
            table = np.array(
                [0.0] + [1.0 + math.log(k) for k in range(1, max(most, 64) * 2)], dtype=np.float64
            )
            self._tf_table = table
        return table

    def predict(self, label: str, vec: Features, top: int = 3) -> Prediction:
        """The most probable class, its probability and its strongest features."""
        model = self.labels[label]
        contrib = model.coef[:, vec.index] * vec.value
        scores = contrib.sum(axis=1) + model.intercept
        best = int(np.argmax(scores))
        exp = np.exp(scores - scores[best])
        strongest = np.argsort(-contrib[best])[:top]
        names = tuple(self._names[int(vec.index[k])] for k in strongest if contrib[best, k] > 0)
        total = float(exp.sum())
        every = {c: float(e) / total for c, e in zip(model.classes, exp, strict=True)}
        return Prediction(model.classes[best], round(1.0 / total, 4), names, every)
