"""The server secret that signs reply tokens (file I/O kept out of ``pipeline/``).

``security.secret`` wins, then the first line of ``security.secret_file``; with neither,
a random secret is generated on first use and kept in ``<storage.dir>/secret`` with
mode 0600. Two instances starting at once on one storage dir end up with the same
secret: the file is written under a temporary name and linked into place, which fails
if it exists already (then the winner's file is read), so nobody reads a half-written
file and nobody overwrites one.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from mailtriage.config import MIN_SECRET_LENGTH, ConfigError, SecuritySettings

__all__ = ["SECRET_FILE_NAME", "load_secret", "read_secret_file"]

SECRET_FILE_NAME = "secret"
log = logging.getLogger(__name__)


def load_secret(security: SecuritySettings, storage_dir: Path) -> bytes:
    """The secret as bytes; a missing or too short secret file is a ConfigError that
    names the key."""
    if security.secret:
        return security.secret.encode("utf-8")
    if security.secret_file:
        return _read(Path(security.secret_file), "security.secret_file")
    path = storage_dir / SECRET_FILE_NAME
    if not path.exists():
        _create(path)
    elif (mode := stat.S_IMODE(path.stat().st_mode)) & 0o077:
        log.warning("%s is readable by others (mode %03o); chmod 600 it", path, mode)
    return _read(path, f"security.secret (generated file {path})")


def read_secret_file(path: Path, key: str) -> bytes:
    """The secret in ``path`` (its first line), without generating one; a ConfigError
    naming ``key`` when it is missing, unreadable or too short."""
    return _read(path, key)


def _read(path: Path, key: str) -> bytes:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{key}: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc}") from None
    lines = text.splitlines()
    secret = lines[0].strip() if lines else ""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{key}: the secret in {path} is shorter than {MIN_SECRET_LENGTH}")
    return secret.encode("utf-8")


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # atomic, and never replaces an existing file
            log.info("generated the reply-token secret in %s", path)
        except FileExistsError:
            pass  # another instance was first: use its secret
    finally:
        temporary.unlink(missing_ok=True)
