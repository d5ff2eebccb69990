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
PREFIX = "mailtriage-metrics-"  # + the daemon's pid + random
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
        _sweep()
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        os.environ[ENV] = str(path)
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    _prepared.append(path)
    return path


def _sweep() -> None:
    """Remove the directories of daemons that are gone (killed: no atexit ran)."""
    for old in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = old.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def imported_too_early() -> bool:
    """True when prometheus-client was imported in this process before ``prepare``
    (its counters here then live in memory, not in the shared directory)."""
    values = sys.modules.get("prometheus_client.values")
    return values is not None and getattr(values, "ValueClass", None) is getattr(
        values, "MutexValue", object()
    )
