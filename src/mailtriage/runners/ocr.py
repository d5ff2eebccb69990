"""Text of screenshots with Tesseract (optional extra ``[ocr]``: pytesseract, plus the
Debian packages ``tesseract-ocr``, ``tesseract-ocr-deu``).

Error dialogs carry the best signal of a vague mail ("siehe Screenshot"), so the text
goes into the classifier's input and is stored with the attachment.

Never an error: without pytesseract or the tesseract binary (or without any of the
requested languages) OCR is off, said in ONE log line per process; an image Tesseract
cannot read is skipped with a log line. Runs in the analysis step, i.e. in the worker's
pool processes, so Tesseract gets ``OMP_THREAD_LIMIT=1``: one thread per process is
faster than several on a busy machine and does not oversubscribe the cores.

Tesseract is a subprocess (pytesseract writes the image to a temporary file), so this
lives at the edge: the runner hands ``analyse`` a function made from
:func:`ocr_screenshots` (``runners.analysis.configured_ocr``), or None.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from mailtriage.pipeline.parse import ParsedAttachment

__all__ = ["MAX_IMAGES", "available_languages", "ocr_image", "ocr_screenshots"]

log = logging.getLogger(__name__)

# At most this many distinct screenshots per message (each takes ~0.4 s).
MAX_IMAGES = 5
# Seconds per image before Tesseract is stopped.
TIMEOUT_SECONDS = 30
# Tesseract reads small UI text better enlarged twice; an image that would then have more
# than this many pixels is read as it is.
UPSCALE_MAX_PIXELS = 2_000_000
MAX_TEXT = 4000  # characters kept per image

_state: dict[str, Any] = {}  # per process: requested languages -> usable ones or None


def _once(message: str, *args: object) -> None:
    if not _state.get("warned"):
        _state["warned"] = True
        log.warning(message, *args)


def available_languages(languages: str) -> str | None:
    """The installed subset of ``languages`` ("deu+eng") or None when OCR is not possible
    (reported once per process). Cached per process."""
    key = f"langs:{languages}"
    if key in _state:
        return _state[key]
    result: str | None = None
    try:
        import pytesseract

        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        installed = set(pytesseract.get_languages(config=""))
        wanted = [lang for lang in languages.split("+") if lang.strip()]
        usable = [lang for lang in wanted if lang in installed]
        if usable:
            result = "+".join(usable)
            if len(usable) < len(wanted):
                missing = sorted(set(wanted) - set(usable))
                _once("OCR: Tesseract languages %s are not installed; using %s", missing, result)
        else:
            _once(
                "OCR off: none of the Tesseract languages %r is installed "
                "(Debian: tesseract-ocr-deu, tesseract-ocr-eng)",
                languages,
            )
    except ImportError:
        _once("OCR off: pytesseract is not installed (pip install 'mailtriage[ocr]')")
    except (OSError, RuntimeError) as exc:  # TesseractNotFoundError, TesseractError
        _once("OCR off: Tesseract is not usable (Debian: apt install tesseract-ocr): %s", exc)
    _state[key] = result
    return result


_BLANK_LINES = re.compile(r"\n\s*\n+")
_SPACES = re.compile(r"[ \t]+")


def _clean(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    # lines without a letter or digit are OCR noise (frames, icons, "|", "—")
    kept = [line for line in lines if any(ch.isalnum() for ch in line)]
    return "\n".join(kept)[:MAX_TEXT]


def ocr_image(data: bytes | bytearray, languages: str) -> str:
    """The text of one image ("" when OCR is off or the image cannot be read)."""
    langs = available_languages(languages)
    if langs is None:
        return ""
    import pytesseract
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            gray = img.convert("L")
        if gray.width * gray.height * 4 <= UPSCALE_MAX_PIXELS:
            gray = gray.resize((gray.width * 2, gray.height * 2), Image.Resampling.LANCZOS)
        text = pytesseract.image_to_string(gray, lang=langs, timeout=TIMEOUT_SECONDS)
    except (OSError, RuntimeError, ValueError, Image.DecompressionBombError) as exc:
        # a corrupt image (OSError), a Tesseract failure or timeout (RuntimeError)
        log.warning("OCR of one image skipped: %s: %s", type(exc).__name__, exc)
        return ""
    return _clean(str(text))


def ocr_screenshots(
    attachments: Sequence[ParsedAttachment], languages: str
) -> tuple[tuple[str, str], ...]:
    """``(sha256, text)`` for each distinct screenshot with text (at most MAX_IMAGES)."""
    shots: dict[str, ParsedAttachment] = {}
    for att in attachments:
        if att.is_screenshot and att.data and att.sha256 not in shots:
            shots[att.sha256] = att
    if not shots or available_languages(languages) is None:
        return ()
    out = []
    for sha, att in list(shots.items())[:MAX_IMAGES]:
        text = ocr_image(att.data, languages)
        if text:
            out.append((sha, text))
    return tuple(out)
