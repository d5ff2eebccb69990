"""Attachments as values: bytes, hash, real image type and size, screenshots, and the
files inside a TNEF winmail.dat."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from PIL import Image, UnidentifiedImageError

from mailtriage.pipeline.mime import clean


class ScreenshotLimits(Protocol):
    """What tells a screenshot from a logo (ParseLimits has these)."""

    @property
    def min_screenshot_side(self) -> int: ...

    @property
    def min_screenshot_pixels(self) -> int: ...


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content_type: str
    size: int
    sha256: str
    # The bytes; empty once they are in the blob store (see without_data()), so a
    # parse result crossing a process boundary does not carry megabytes.
    data: bytes | bytearray = field(repr=False, default=b"")
    is_inline: bool = False
    content_id: str | None = None
    is_screenshot: bool = False
    width: int | None = None
    height: int | None = None

    def without_data(self) -> ParsedAttachment:
        return replace(self, data=b"")


_EXT = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/webp": "webp",
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/html": "html",
    "text/calendar": "ics",
    "message/delivery-status": "txt",
    "text/rfc822-headers": "txt",
}


def default_name(ctype: str, content_id: str | None) -> str:
    stem = (content_id or "part").split("@")[0][:60] or "part"
    return f"{stem}.{_EXT.get(ctype, 'bin')}"


def make_attachment(
    name: str,
    ctype: str,
    data: bytes | bytearray,
    is_inline: bool,
    content_id: str | None,
    limits: ScreenshotLimits,
    *,
    sniff: bool = True,
) -> ParsedAttachment:
    width, height, real_type = image_size(data) if sniff else (None, None, None)
    if real_type:
        ctype = real_type
    is_screenshot = (
        width is not None
        and height is not None
        and min(width, height) >= limits.min_screenshot_side
        and width * height >= limits.min_screenshot_pixels
    )
    return ParsedAttachment(
        filename=clean(name),
        content_type=clean(ctype),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        is_inline=is_inline,
        content_id=content_id,
        is_screenshot=is_screenshot,
        width=width,
        height=height,
    )


_IMAGE_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}


_IMAGE_HEADER_BYTES = 256 * 1024


def image_size(data: bytes | bytearray) -> tuple[int | None, int | None, str | None]:
    """(width, height, mime type) when the bytes are an image, by content not name.

    Pillow reads only the header here (``Image.open`` is lazy), so this is cheap
    even for a large screenshot.
    """
    if len(data) < 16:
        return None, None, None
    try:
        # The size is in the first bytes of every format we accept; reading only
        # those keeps a 40 MB attachment from being copied for a look at its header.
        head = bytes(memoryview(data)[:_IMAGE_HEADER_BYTES])
        with Image.open(io.BytesIO(head), formats=tuple(_IMAGE_MIME)) as img:
            mime = _IMAGE_MIME.get(img.format or "")
            if mime is None:
                return None, None, None
            return int(img.width), int(img.height), mime
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None, None, None


def tnef_files(data: bytes | bytearray, limits: ScreenshotLimits) -> Iterator[ParsedAttachment]:
    try:
        from tnefparse import TNEF

        tnef = TNEF(data)
    except Exception:  # tnefparse raises plain ValueError/struct.error on junk
        return
    for item in tnef.attachments:
        raw = item.data if isinstance(item.data, bytes) else bytes(item.data or b"")
        name = item.long_filename() or item.name or "winmail-part.bin"
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        yield make_attachment(str(name), "application/octet-stream", raw, False, None, limits)
