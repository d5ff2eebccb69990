"""The user's cache directory for derived data (the language model, holiday dates).

``$MAILTRIAGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/mailtriage`` or
``~/.cache/mailtriage``: shared by every database and storage directory of the
installation. What is cached there can always be derived again, so a cache that cannot
be read or written is skipped, never an error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["ENV_CACHE_DIR", "default_cache_dir", "publish_directory"]

ENV_CACHE_DIR = "MAILTRIAGE_CACHE_DIR"


def default_cache_dir() -> Path | None:
    """None when there is no place for it (no home directory)."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "mailtriage"
    home = os.path.expanduser("~")
    return Path(home) / ".cache" / "mailtriage" if home != "~" else None


def publish_directory(path: Path, fill: Callable[[Path], None]) -> None:
    """Make the cache directory ``path`` complete or not at all: ``fill`` writes its
    files into a temporary directory beside it, which is then renamed into place. When
    another process was first, its copy is as good and ours is dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    try:
        fill(tmp)
        os.rename(tmp, path)
    except OSError:
        if path.is_dir():
            return
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
