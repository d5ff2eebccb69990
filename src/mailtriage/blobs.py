"""Content-addressed files: sha256 -> path, written tmp + fsync + rename."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    """Immutable blobs under ``root/ab/<sha256>``.

    One level of 256 directories: small enough directories for millions of
    blobs, and after the first few hundred writes no write creates a directory (each
    new directory costs two more fsyncs before a message may be acknowledged).

    Writing the same bytes twice is a no-op, so writers never need to coordinate
    (several processes or instances may share the directory).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put(self, data: bytes | bytearray, *, durable: bool = True) -> str:
        """Store ``data``; return its sha256. ``durable`` fsyncs file and directory.

        Raw messages are durable; derived blobs (attachments, which can be cut out
        of the raw message again) skip the fsync.
        """
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists():
            return sha
        new_dirs = not target.parent.exists()
        if new_dirs:  # (a mkdir of an existing directory still locks its parent)
            target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if durable:
            _fsync_dir(target.parent)
            if new_dirs:  # the new directory entry must survive a crash too
                _fsync_dir(self.root)
        return sha

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
