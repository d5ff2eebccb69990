"""Load what the pure pipeline needs (rules, model, limits, OCR) from settings, once.

The pipeline opens no files: the runner (worker, pool process, CLI command) builds an
:class:`AnalyserSource` and asks it for the current :class:`Analyser` before each
batch. The rules are read once; the model file is checked by mtime, so a model that
`mailtriage train` replaced is used from the next batch on without a restart.
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import lru_cache, partial
from typing import TYPE_CHECKING

from mailtriage.config import Settings
from mailtriage.pipeline.analyse import Analyser, OcrFunction
from mailtriage.pipeline.classify import Rules
from mailtriage.pipeline.parse import ParseLimits
from mailtriage.runners.language_model import prepare_language_model
from mailtriage.triage.rules_file import load_rules

if TYPE_CHECKING:
    from mailtriage.triage.model import TriageModel

MB = 1024 * 1024


def parse_limits(settings: Settings) -> ParseLimits:
    return ParseLimits(
        max_message_bytes=int(settings.storage.max_message_mb * MB),
        max_attachment_bytes=int(settings.storage.max_attachment_mb * MB),
    )


def configured_rules(settings: Settings) -> Rules:
    """``triage.rules_file`` or the packaged default. Raises RulesError."""
    return load_rules(settings.triage.rules_file or None)


@lru_cache(maxsize=4)
def process_rules(path: str | None) -> Rules:
    """The rules at ``path`` (None: the default), compiled once per process: the fork
    server compiles the default rules before it forks the pool processes, which then
    share them instead of compiling their own (a third of a second each)."""
    return load_rules(path)


def configured_ocr(settings: Settings) -> OcrFunction | None:
    """Tesseract on screenshots when ``triage.ocr`` is on (it says once if it cannot)."""
    if not settings.triage.ocr:
        return None
    from mailtriage.runners.ocr import ocr_screenshots

    return partial(ocr_screenshots, languages=settings.triage.ocr_languages)


class AnalyserSource:
    """The current :class:`Analyser` for ``settings``; reloads a replaced model file.

    Rules and language model are loaded at once, so that a broken rules file is an
    error before any message is claimed, and pool processes find the model's cache.
    """

    def __init__(self, settings: Settings) -> None:
        self._model_file = ""
        if settings.triage.use_model:
            from mailtriage.triage.model import model_path

            self._model_file = str(model_path(settings))
        self._model_mtime: int | None = None
        prepare_language_model()
        self._analyser = Analyser(
            rules=process_rules(settings.triage.rules_file or None),
            limits=parse_limits(settings),
            own_domains=settings.mail.own_domains,
            ocr=configured_ocr(settings),
        )

    def current(self) -> Analyser:
        mtime = _mtime(self._model_file) if self._model_file else None
        if mtime != self._model_mtime:
            self._model_mtime = mtime
            self._analyser = replace(self._analyser, model=_load_model(self._model_file, mtime))
        return self._analyser


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _load_model(path: str, mtime: int | None) -> TriageModel | None:
    if mtime is None:
        return None
    from pathlib import Path

    from mailtriage.triage.model import load_model

    return load_model(Path(path))
