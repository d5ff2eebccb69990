"""Imported by the worker pool's fork server before it forks the pool processes:
import the pipeline and compile the default rules once, so the pool processes share
these pages copy-on-write instead of each spending time on them. (The language model
is not loaded here: each pool process maps its cache, see runners.language_model,
which the page cache shares.) Importing this module is its effect, and so is tying
the fork server's life to the worker's.
"""

from __future__ import annotations

import signal

from mailtriage.ops.lifeline import die_with_parent

# First: the fork server ends with the worker that started it (and so, in turn, do
# its pool processes), however the worker died. No watcher thread where the kernel
# does it: a fork server must not fork with threads running.
die_with_parent(signal.SIGKILL, watch=False)

from mailtriage.pipeline import analyse as _analyse  # noqa: E402,F401  (imported for its effect)
from mailtriage.runners.analysis import process_rules  # noqa: E402

process_rules(None)
