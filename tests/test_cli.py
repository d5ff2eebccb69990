"""The command line as a process: entry points, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLI
from mails import mail

ROOT = Path(__file__).parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailtriage", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        cwd=ROOT,
    )


def test_module_and_console_script() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("mailtriage ")
    script = Path(sys.executable).parent / "mailtriage"
    assert subprocess.run([str(script), "--help"], capture_output=True).returncode == 0


def test_the_entry_point_keeps_the_status_and_skips_the_last_collection(tmp_path: Path) -> None:
    """run() (the console script, ``python -m mailtriage``) exits with main()'s status,
    its output flushed and atexit handlers run, with the objects frozen for the
    garbage collector (its last collection at exit walked all of them)."""
    script = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "from mailtriage.cli import run\n"
        "sys.argv = ['mailtriage', 'import', '/nonexistent/path.eml']\n"
        "run()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "MAILTRIAGE_STORAGE_DIR": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 2 and "no such file" in result.stderr
    assert result.stdout.strip() == "frozen True"


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        (
            {"MAILTRIAGE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"},
            ["tickets", "list"],
            "database",
        ),
        ({"MAILTRIAGE_DATABASE_URL": "not a url"}, ["tickets", "list"], "database.url"),
        ({}, ["import", "/nonexistent/path.eml"], "no such file"),
        ({}, ["--config", "/nonexistent.toml", "tickets", "list"], "config file not found"),
    ],
)
def test_user_errors_print_one_line(
    tmp_path: Path, env: dict[str, str], args: list[str], expected: str
) -> None:
    result = run(*args, env={"MAILTRIAGE_STORAGE_DIR": str(tmp_path), **env})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "mailtriage: error:" in line]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_quarantine_retry_after_fixing_the_cause(
    cli: CLI, tmp_path: Path, config_file: Path
) -> None:
    original = config_file.read_text()
    config_file.write_text(
        original.replace("[storage]\n", "[storage]\nmax_attachment_mb = 0.01\n"), encoding="utf-8"
    )
    raw = mail(attachments=[("dump.bin", "application/octet-stream", b"\x01" * 40_000)])
    (tmp_path / "m.eml").write_bytes(raw)
    assert cli.json("import", str(tmp_path / "m.eml"))["quarantined"] == 1
    [row] = cli.json("quarantine", "list")
    config_file.write_text(original, encoding="utf-8")  # ops raise the cap
    code, out, err = cli("quarantine", "retry", str(row["id"]))
    assert code == 0 and "done created" in out, err
    assert cli.json("quarantine", "list") == []
    [ticket] = cli.json("tickets", "list")
    assert ticket["attachment_count"] == 1


def test_db_commands(cli: CLI) -> None:
    code, out, _ = cli("db", "upgrade")
    assert code == 0 and "revision" in out
    code, out, _ = cli("db", "current")
    assert code == 0 and "code expects" in out


def test_outbox_status_choices_are_the_model_s() -> None:
    from mailtriage.cli.outbox import OUTBOX_STATUSES
    from mailtriage.store.outbound_models import OutboxStatus

    assert OUTBOX_STATUSES == OutboxStatus.ALL


def test_help_and_classify_do_not_import_the_database_layer() -> None:
    """`--version`, `--help` and `classify` (no database) start without SQLAlchemy."""
    eml = ROOT / "samples" / "0001.eml"
    code = (
        "import sys; from mailtriage.cli import main; "
        f"main(['classify', {str(eml)!r}, '--json']); "
        "print('sqlalchemy' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.splitlines()[-1] == "False", result.stderr
