"""The reply-token secret: configured, from a file, or generated once with mode 0600."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from mailtriage.config import ConfigError, SecuritySettings
from mailtriage.server_secret import load_secret


def test_configured_secret_wins(tmp_path: Path) -> None:
    security = SecuritySettings(secret="a-configured-secret-0123")
    assert load_secret(security, tmp_path) == b"a-configured-secret-0123"
    assert not (tmp_path / "secret").exists()


def test_secret_file_first_line(tmp_path: Path) -> None:
    file = tmp_path / "mounted"
    file.write_text("  from-a-file-0123456789  \nsecond line\n", encoding="utf-8")
    security = SecuritySettings(secret_file=str(file))
    assert load_secret(security, tmp_path / "storage") == b"from-a-file-0123456789"
    assert not (tmp_path / "storage" / "secret").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "security.secret_file: file not found"),
        ("", "security.secret_file: the secret in"),
        ("short\n", "security.secret_file: the secret in"),
        ("\nsecret-on-the-second-line\n", "is shorter than 16"),
    ],
)
def test_bad_secret_file_names_the_key(tmp_path: Path, content: str | None, message: str) -> None:
    file = tmp_path / "mounted"
    if content is not None:
        file.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_secret(SecuritySettings(secret_file=str(file)), tmp_path)


def test_generated_once_with_mode_0600(tmp_path: Path) -> None:
    storage = tmp_path / "var"
    first = load_secret(SecuritySettings(), storage)
    file = storage / "secret"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_secret(SecuritySettings(), storage) == first  # kept, not regenerated
    assert [p.name for p in storage.iterdir()] == ["secret"]  # no temporary file left
    other = load_secret(SecuritySettings(), tmp_path / "elsewhere")
    assert other != first  # random per installation


def test_an_existing_file_is_never_replaced(tmp_path: Path) -> None:
    # As if another instance had just written it.
    (tmp_path / "secret").write_text("the-other-instances-secret\n", encoding="utf-8")
    (tmp_path / "secret").chmod(0o600)
    assert load_secret(SecuritySettings(), tmp_path) == b"the-other-instances-secret"
    assert (tmp_path / "secret").read_text() == "the-other-instances-secret\n"


def test_readable_by_others_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "secret").write_text("the-other-instances-secret\n", encoding="utf-8")
    (tmp_path / "secret").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="mailtriage.server_secret"):
        load_secret(SecuritySettings(), tmp_path)
    assert "readable by others" in caplog.text


def test_generated_file_emptied_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"security.secret \(generated file"):
        load_secret(SecuritySettings(), tmp_path)
