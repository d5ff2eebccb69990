"""The directory where prometheus-client's multiprocess mode keeps its counters.

`mailtriage run` counts in two processes (intake in the daemon, processing in the
worker process); /metrics must show their sum. prometheus-client does that with one
file per process in ``$PROMETHEUS_MULTIPROC_DIR``, which must be set before
prometheus-client is imported by any of them: :func:`prepare` runs first thing in
`mailtriage run`, before the modules that import it (hence no prometheus import here).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_prepared: list[Path] = []


def prepare() -> Path:
    """Set ``$PROMETHEUS_MULTIPROC_DIR`` (a fresh private directory unless ops set
    one) and empty it: counters start at zero with each start of the daemon."""
    if _prepared:
        return _prepared[0]
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):  # the files of an earlier run
            old.unlink(missing_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="mailtriage-metrics-"))
        os.environ[ENV] = str(path)
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    _prepared.append(path)
    return path


def imported_too_early() -> bool:
    """True when prometheus-client was imported in this process before ``prepare``
    (its counters here then live in memory, not in the shared directory)."""
    values = sys.modules.get("prometheus_client.values")
    return values is not None and getattr(values, "ValueClass", None) is getattr(
        values, "MutexValue", object()
    )
