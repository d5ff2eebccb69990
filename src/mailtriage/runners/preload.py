"""Imported by the worker pool's fork server: load the default rules and the language
model once, before the pool processes are forked from it.

The pool processes then share these pages copy-on-write instead of each spending a
second loading them (and holding its own copy). Importing this module is its effect.
"""

from __future__ import annotations

from mailtriage.pipeline.analyse import Analyser, warm_up
from mailtriage.pipeline.classify import load_rules

warm_up(Analyser(rules=load_rules()))
