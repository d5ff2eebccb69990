"""The Dockerfile passes hadolint (no Docker engine here to build it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_service_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in text
    assert '"run"]' in text
    assert "MAILTRIAGE_MIGRATIONS_DIR=/app/migrations" in text
