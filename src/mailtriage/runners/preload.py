"""Imported by the worker pool's fork server before it forks the pool processes:
import the pipeline, compile the default rules and map the language model's cache
(runners.language_model) once, so the pool processes share these pages copy-on-write
instead of each spending time on them. Importing this module is its effect.

What is loaded here is then frozen for the garbage collector: the pool processes'
collections do not walk it (nor touch, and so copy, its pages), and the fork server
does not walk it once more when it exits with the worker.
"""

from __future__ import annotations

import gc

from mailtriage.pipeline import analyse as _analyse  # noqa: F401  (imported for its effect)
from mailtriage.pipeline.classify import ClassifierInput, classify
from mailtriage.runners.analysis import process_rules
from mailtriage.runners.language_model import prepare_language_model

_rules = process_rules(None)
prepare_language_model()  # the mapped cache, not the packaged model's decompression
# What the classifier compiles on first use (the scanner's prefix finders for ASCII and
# for other text, the impact facts' union): once here rather than about 36 ms in every
# pool process.
for _text in ("Der Drucker druckt nicht, bitte helfen.", "Der Server läuft nicht, dringend!"):
    classify(ClassifierInput(_text, _text, "", "", (), "kunde@firma.example"), _rules)
gc.freeze()
