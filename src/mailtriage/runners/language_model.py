"""The language model, loaded fast: an uncompressed copy of py3langid's model.

The packaged model is LZMA-compressed; decompressing it is most of a second of every
start (importing one message took 3.6 s). The first start writes the model, already
restricted to our candidate languages, as plain ``.npy`` arrays in a directory under
the user's cache directory (``$MAILTRIAGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/mailtriage``
or ``~/.cache/mailtriage``: derived data, shared by every database and storage
directory of the installation); later starts map those files into memory (``mmap``)
in a few milliseconds, and the pages are shared by every process of the worker pool.
The directory name carries the py3langid version and the language list, so an
upgrade writes a new one. A cache that cannot be read or written is skipped, never an
error.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from mailtriage.cache_dir import ENV_CACHE_DIR, default_cache_dir, publish_directory
from mailtriage.pipeline import language

log = logging.getLogger(__name__)

_ARRAY_TYPES = {"H": "<u2", "I": "<u4", "L": "<u8"}
__all__ = ["ENV_CACHE_DIR", "default_cache_dir", "prepare_language_model"]


def prepare_language_model(cache_dir: Path | None = None) -> None:
    """Load the language model into this process (no-op when it is loaded already)."""
    if language.identifier_loaded():
        return
    directory = cache_dir or default_cache_dir()
    if directory is None:
        language.use_identifier(language.packaged_identifier())
        return
    path = directory / _cache_name()
    identifier = None
    if path.is_dir():
        try:
            identifier = _read(path)
        except (OSError, ValueError, KeyError) as exc:
            log.info("language model cache %s unusable (%s): rebuilt", path, exc)
    if identifier is None:
        identifier = language.packaged_identifier()
        try:
            _write(path, identifier)
        except OSError as exc:
            log.info("language model cache %s not written: %s", path, exc)
    language.use_identifier(identifier)


def _cache_name() -> str:
    try:
        version = metadata.version("py3langid")
    except metadata.PackageNotFoundError:
        version = "unknown"
    langs = hashlib.sha256(",".join(language.CANDIDATE_LANGUAGES).encode()).hexdigest()[:12]
    return f"langid-{version}-{langs}"


def _write(path: Path, ident: Any) -> None:
    import numpy as np

    def fill(tmp: Path) -> None:
        arrays = {
            "ptc": np.ascontiguousarray(ident.nb_ptc),
            "pc": np.asarray(ident.nb_pc),
            "classes": np.array(ident.nb_classes),
            "nextmove": np.frombuffer(ident.tk_nextmove, _ARRAY_TYPES[ident.tk_nextmove.typecode]),
            "row": np.frombuffer(ident.tk_row, _ARRAY_TYPES[ident.tk_row.typecode]),
            "output": np.asarray(ident.tk_output, dtype=np.int32),
        }
        for name, values in arrays.items():
            np.save(tmp / f"{name}.npy", values, allow_pickle=False)

    publish_directory(path, fill)


def _read(path: Path) -> Any:
    import numpy as np
    from py3langid.langid import LanguageIdentifier

    def load(name: str) -> Any:
        return np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)

    return LanguageIdentifier(
        load("ptc"),
        np.array(load("pc")),
        load("classes").tolist(),
        _ints(load("nextmove")),
        load("output").tolist(),
        norm_probs=True,
        tk_row=_ints(load("row")),
    )


def _ints(values: Any) -> memoryview:
    """Indexable like py3langid's array.array of the DFA, without a copy."""
    raw = memoryview(values).cast("B")
    if values.dtype.itemsize == 2:
        return raw.cast("H")
    if values.dtype.itemsize == 4:
        return raw.cast("I")
    return raw.cast("Q")
