"""The user's cache directory for derived data (the language model, holiday dates).

``$MAILTRIAGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/mailtriage`` or
``~/.cache/mailtriage``: shared by every database and storage directory of the
installation. What is cached there can always be derived again, so a cache that cannot
be read or written is skipped, never an error.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_CACHE_DIR", "default_cache_dir"]

ENV_CACHE_DIR = "MAILTRIAGE_CACHE_DIR"


def default_cache_dir() -> Path | None:
    """None when there is no place for it (no home directory)."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "mailtriage"
    home = os.path.expanduser("~")
    return Path(home) / ".cache" / "mailtriage" if home != "~" else None
