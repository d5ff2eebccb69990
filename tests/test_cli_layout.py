"""The command line for people and for scripts: `tickets list` fitted to the terminal,
`--json` on every command that prints."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from rich.cells import cell_len

from mailtriage.cli import build_parser

from conftest import CLI
from mails import mail

ROOT = Path(__file__).parent.parent
LONG_SUBJECT = (
    "Nach dem Update auf 7.4 bricht der nächtliche Export nach SAP mit Fehler 0x80004005 ab "
    "und die Buchhaltung wartet"
)


Parser = argparse.ArgumentParser


def _leaves(parser: Parser, path: tuple[str, ...] = ()) -> dict[str, Parser]:
    found: dict[str, Parser] = {}
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {" ".join(path): parser}
    for name, child in subs[0].choices.items():
        found |= _leaves(child, (*path, name))
    return found


def test_every_command_that_prints_has_json() -> None:
    leaves = _leaves(build_parser())
    assert {"tickets list", "db current", "doctor", "purge"} <= set(leaves)
    missing = [
        name
        for name, parser in leaves.items()
        if name != "run"  # the daemon: it logs (logging.json), it prints nothing
        and not any("--json" in a.option_strings for a in parser._actions)
    ]
    assert missing == []


def _list(config: Path, columns: int) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mailtriage", "--config", str(config), "tickets", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": str(columns)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tickets_list_fits_80_columns(cli: CLI, config_file: Path, tmp_path: Path) -> None:
    senders = [
        "Maximiliane Oberhuber-Schwarzenberg <maximiliane.oberhuber-schwarzenberg@"
        "steuerberatung-oberhuber.example>",
        "Erika <erika@kunde.example>",
    ]
    for i, sender in enumerate(senders):
        (tmp_path / f"{i}.eml").write_bytes(mail(subject=f"{LONG_SUBJECT} {i}", sender=sender))
    (tmp_path / "short.eml").write_bytes(mail(subject="Drucker", sender=senders[1]))
    assert cli.json("import", str(tmp_path / "0.eml"), str(tmp_path / "1.eml"))["created"] == 2
    assert cli.json("import", str(tmp_path / "short.eml"))["created"] == 1

    text = _list(config_file, 80)
    lines = text.splitlines()
    assert len(lines) == 4  # header + 3 tickets, one line each
    assert all(cell_len(line) <= 80 for line in lines), text
    assert lines[0].split()[:4] == ["number", "status", "level", "prio"]
    for number, line in zip(["DM-000003", "DM-000002", "DM-000001"], lines[1:], strict=True):
        assert line.startswith(f"{number} "), text  # the reference is never cut
    # the subject gets what is left: a long one is cut with an ellipsis, not dropped
    assert "Nach dem Update auf 7.4" in lines[2] and lines[2].rstrip().endswith("…")
    assert lines[1].rstrip().endswith("Drucker")
    assert len(lines[2].rstrip()) >= 75  # the subject really takes the rest of the line

    wide = _list(config_file, 250).splitlines()
    assert all(cell_len(line) <= 250 for line in wide)
    assert "requester" in wide[0] and "files" in wide[0]
    assert f"{LONG_SUBJECT} 1" in wide[2]  # room enough: nothing is cut

    tiny = _list(config_file, 40).splitlines()
    assert all(line.startswith(("number", "DM-00000")) for line in tiny)
    assert tiny[1].split()[0] == "DM-000003"


def test_subject_is_not_markup(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "m.eml").write_bytes(mail(subject="[bold red]Alarm[/] [link=x]y"))
    cli.json("import", str(tmp_path / "m.eml"))
    code, out, _ = cli("tickets", "list")
    assert code == 0 and "[bold red]Alarm[/]" in out


def test_json_of_the_commands_that_lacked_it(cli: CLI, tmp_path: Path) -> None:
    assert cli.json("db", "upgrade")["revision"]
    current = cli.json("db", "current")
    assert current["at_head"] is True and current["revision"] == current["head"]
    (tmp_path / "m.eml").write_bytes(mail())
    cli.json("import", str(tmp_path / "m.eml"))
    exported = cli.json("quarantine", "export", "1", str(tmp_path / "out.eml"))
    size = (tmp_path / "out.eml").stat().st_size
    assert exported == {"id": 1, "file": str(tmp_path / "out.eml"), "bytes": size}
