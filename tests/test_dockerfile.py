"""The Dockerfile passes hadolint (no Docker engine here to build it); its healthcheck
command works against the real daemon; the example systemd unit verifies and is hardened."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from mailtriage.config import load_settings
from mailtriage.ops.logs import wants_json

from servers import Daemon

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


def test_dockerfile_has_a_volume_a_healthcheck_and_the_container_config() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'VOLUME ["/data"]' in text and "MAILTRIAGE_STORAGE_DIR=/data" in text
    assert "FROM python:3.11-slim" in text
    assert re.search(r"^EXPOSE 2525 8025$", text, re.M)
    assert "HEALTHCHECK" in text and "127.0.0.1:8025/healthz" in text
    assert 'ENTRYPOINT ["mailtriage"]' in text
    assert "COPY deploy/config.docker.toml /etc/mailtriage/config.toml" in text
    assert 'CMD ["--config", "/etc/mailtriage/config.toml", "run"]' in text
    # the config it runs with: reachable from outside the container, HTTP on the
    # healthcheck's port, JSON logs
    settings = load_settings(ROOT / "deploy" / "config.docker.toml")
    assert (settings.smtp.host, settings.smtp.port) == ("0.0.0.0", 2525)
    assert settings.http.enabled and (settings.http.host, settings.http.port) == ("0.0.0.0", 8025)
    assert wants_json(settings.logging)


def healthcheck_command(port: int) -> list[str]:
    """The Dockerfile's HEALTHCHECK command, aimed at ``port``."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M)
    assert found, "no HEALTHCHECK CMD [...] in the Dockerfile"
    argv = json.loads(found.group(1))
    assert argv[0] == "python"
    return [sys.executable, *(a.replace(":8025/", f":{port}/") for a in argv[1:])]


def test_the_healthcheck_passes_while_the_daemon_runs_and_fails_after(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "m.db"}"\n'
        f'[storage]\ndir = "{tmp_path / "var"}"\n'
        "[worker]\nprocesses = 1\n[smtp]\nport = 0\n[http]\nenabled = true\nport = 0\n",
        encoding="utf-8",
    )
    with Daemon(config) as daemon:
        line = daemon.wait_for_line("/healthz /readyz /metrics at")
        port = int(line.rsplit(":", 1)[1].split()[0])
        check = healthcheck_command(port)
        assert subprocess.run(check, capture_output=True, timeout=30).returncode == 0
        assert daemon.terminate(timeout=15) == 0
    assert subprocess.run(check, capture_output=True, timeout=30).returncode != 0


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
}


def unit_settings(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, val = line.partition("=")
            out.setdefault(key.strip(), val.strip())
    return out


def test_the_systemd_unit_is_valid_and_hardened(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "mailtriage.service").read_text()
    unit = unit_settings(text)
    for key, want in HARDENING.items():
        assert unit.get(key) == want, f"{key}={unit.get(key)!r}, expected {want!r}"
    assert unit["User"] == "mailtriage" and unit["StateDirectory"] == "mailtriage"
    assert unit["ExecStart"].endswith("run") and "db upgrade" in unit["ExecStartPre"]
    assert unit["KillMode"] == "mixed"
    assert float(unit["TimeoutStopSec"]) > 30  # > service.shutdown_grace_seconds
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("systemd-analyze is missing")
        return
    # verified as it would run here: the binary from this venv
    local = tmp_path / "mailtriage.service"
    local.write_text(
        text.replace(
            "/opt/mailtriage/bin/mailtriage", str(Path(sys.executable).parent / "mailtriage")
        )
    )
    done = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
