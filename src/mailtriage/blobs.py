"""Content-addressed files: sha256 -> path, written tmp + fsync + rename."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
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
        self._dirs: set[Path] = set()  # directories known to exist (none is ever removed)

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put(
        self, data: bytes | bytearray, *, durable: bool = True, sha256: str | None = None
    ) -> str:
        """Store ``data``; return its sha256. ``durable`` fsyncs file and directory.

        Raw messages are durable; derived blobs (attachments, which
        ``attachment_data`` cuts out of the raw message again when lost) skip the
        fsync. ``sha256``: the digest of ``data`` when the caller has it already (the
        parser hashes every attachment).
        """
        sha = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists():
            return sha
        new_dirs = target.parent not in self._dirs and not target.parent.exists()
        if new_dirs:  # (a mkdir of an existing directory still locks its parent)
            target.parent.mkdir(parents=True, exist_ok=True)
        self._dirs.add(target.parent)
        fd, tmp = _create_temporary(target.parent)
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


_names = itertools.count()


def _create_temporary(directory: Path) -> tuple[int, Path]:
    """A new file for writing: unique in this process by its counter, across processes
    and hosts by pid and O_EXCL (tempfile.mkstemp's random names cost more CPU than
    the write of a small message)."""
    while True:
        path = directory / f".tmp-{os.getpid()}-{next(_names)}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:  # left by a crashed process whose pid came round again
            continue


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
