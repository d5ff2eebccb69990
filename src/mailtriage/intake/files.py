"""Backfill from files: .eml files, directories of them, mbox files and Maildirs.

A path named on the command line is read whatever its name: an mbox when it starts
with a ``From `` line, a Maildir when it has cur/ and new/, else one message.
Directories are walked recursively and yield ``*.eml`` files, ``*.mbox`` files and
Maildirs (other files, such as a README, are skipped).
"""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MESSAGE_SUFFIXES = {".eml"}
MBOX_SUFFIXES = {".mbox", ".mbx"}


class SourceError(Exception):
    """A path given by the user cannot be read."""


@dataclass(frozen=True)
class FileMessage:
    raw: bytes
    source: str  # e.g. "file:/path/x.eml", "mbox:/path/box#3", "maildir:/path/Maildir#key"


def check_paths(paths: list[Path]) -> None:
    for path in paths:
        if not path.exists():
            raise SourceError(f"{path}: no such file or directory")
        if not os.access(path, os.R_OK):
            raise SourceError(f"{path}: permission denied")


def may_hold_many(paths: list[Path], many: int) -> bool:
    """``paths`` may hold ``many`` messages or more: as many paths, a directory or an
    mbox (a look at each path, nothing read)."""
    return len(paths) >= many or any(path.is_dir() or is_mbox(path) for path in paths)


def iter_messages(paths: list[Path]) -> Iterator[FileMessage]:
    for path in paths:
        if path.is_dir():
            yield from _walk_dir(path)
        else:
            yield from _read_file(path)


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _walk_dir(root: Path) -> Iterator[FileMessage]:
    if is_maildir(root):
        yield from _read_maildir(root)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames.sort()
        if here != root and is_maildir(here):
            yield from _read_maildir(here)
        # A Maildir's own cur/new/tmp were read above; its subfolders (.Sent) are walked.
        if is_maildir(here):
            dirnames[:] = [d for d in dirnames if d not in ("cur", "new", "tmp")]
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            suffix = path.suffix.lower()
            if suffix in MESSAGE_SUFFIXES:
                yield FileMessage(path.read_bytes(), f"file:{path}")
            elif suffix in MBOX_SUFFIXES:
                yield from _read_mbox(path)


def is_mbox(path: Path) -> bool:
    """An mbox file: it starts with a "From " line (or has an mbox suffix)."""
    if not path.is_file():
        return False
    if path.suffix.lower() in MBOX_SUFFIXES:
        return True
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


def _read_file(path: Path) -> Iterator[FileMessage]:
    if is_mbox(path):
        yield from _read_mbox(path)
    else:
        yield FileMessage(path.read_bytes(), f"file:{path}")


def _read_mbox(path: Path) -> Iterator[FileMessage]:
    box = mailbox.mbox(path, create=False)
    try:
        for index, key in enumerate(box.iterkeys()):
            yield FileMessage(box.get_bytes(key), f"mbox:{path}#{index}")
    finally:
        box.close()


def _read_maildir(path: Path) -> Iterator[FileMessage]:
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.iterkeys()):
        yield FileMessage(box.get_bytes(key), f"maildir:{path}#{key}")
