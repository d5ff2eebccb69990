"""py3langid's packaged model, loaded compactly for the languages we ask about.

``LanguageIdentifier.from_model_file`` reads every array of the model into memory and
then copies the 39 MB transition table into an ``array.array``, keeping both for a
moment, and ``set_languages`` keeps the full 142-language table (28 MB) beside the
restricted one. Loading costs some 120 MB at its peak, more than most messages. This
loader reads the same file (npz inside xz) member by member: the transition table
straight into its ``array.array``, the feature table in slices of rows, keeping only
the columns of the wanted languages. The scores are the same (a test compares them).
If the file's layout is not the one known here, it falls back to py3langid's own
loader.
"""

from __future__ import annotations

import lzma
import shutil
import tempfile
import zipfile
from array import array
from collections.abc import Iterable
from typing import IO, Any

import numpy as np

_ROWS_PER_SLICE = 8192
_TYPECODES = {np.dtype("uint16"): "H", np.dtype("uint32"): "I", np.dtype("int32"): "i"}


def load_identifier(languages: Iterable[str]) -> Any:
    """A normalised-probability ``LanguageIdentifier`` restricted to ``languages``."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    wanted = list(languages)
    try:
        return _load_compact(LanguageIdentifier, MODEL_DIR / MODEL_FILE, wanted)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, lzma.LZMAError):
        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        ident.set_languages([x for x in wanted if x in set(ident.labels)])
        ident._full_model = (ident.nb_ptc, ident.nb_pc, ident.nb_classes)
        return ident


def _load_compact(cls: Any, path: Any, wanted: list[str]) -> Any:
    with tempfile.TemporaryFile(suffix=".npz") as tmp:
        with lzma.open(path) as src:
            shutil.copyfileobj(src, tmp, length=1 << 20)
        tmp.seek(0)
        with zipfile.ZipFile(tmp) as npz:
            classes = [str(c) for c in _small(npz, "classes.npy").tolist()]
            keep = [i for i, c in enumerate(classes) if c in set(wanted)]
            if not keep:
                raise ValueError("none of the wanted languages is in the model")
            pc = _small(npz, "pc.npy")[keep]
            ptc = _columns(npz, "ptc.npy", keep)
            nextmove = _as_array(npz, "nextmove.npy")
            row = _as_array(npz, "nextmove_row.npy")
            output = _as_array(npz, "out_feat.npy").tolist()
    return cls(ptc, pc, [classes[i] for i in keep], nextmove, output, norm_probs=True, tk_row=row)


def _header(member: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    return np.lib.format.read_array_header_2_0(member)


def _small(npz: zipfile.ZipFile, name: str) -> np.ndarray[Any, Any]:
    with npz.open(name) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _columns(npz: zipfile.ZipFile, name: str, keep: list[int]) -> np.ndarray[Any, Any]:
    """The 2-D array ``name``, only the columns ``keep``, read a slice of rows at a time."""
    with npz.open(name) as member:
        shape, fortran, dtype = _header(member)
        if fortran or len(shape) != 2:
            raise ValueError(f"{name}: unexpected layout")
        rows, cols = shape
        out = np.empty((rows, len(keep)), dtype=dtype)
        for start in range(0, rows, _ROWS_PER_SLICE):
            count = min(_ROWS_PER_SLICE, rows - start)
            data = member.read(count * cols * dtype.itemsize)
            block = np.frombuffer(data, dtype=dtype, count=count * cols).reshape(count, cols)
            out[start : start + count] = block[:, keep]
    return out


def _as_array(npz: zipfile.ZipFile, name: str) -> array[int]:
    """The 1-D integer array ``name`` as an ``array.array``, read in place."""
    with npz.open(name) as member:
        shape, _fortran, dtype = _header(member)
        if len(shape) != 1 or dtype not in _TYPECODES:
            raise ValueError(f"{name}: unexpected layout")
        out = array(_TYPECODES[dtype], [0]) * shape[0]
        view = memoryview(out).cast("B")
        filled = 0
        while filled < len(view):
            # ZipExtFile.readinto reads into a temporary bytes object: bound it.
            got = member.readinto(view[filled : filled + (1 << 20)])  # type: ignore[attr-defined]
            if not got:
                raise ValueError(f"{name}: truncated")
            filled += got
    return out
