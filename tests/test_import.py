"""`mailtriage import` and the ticket/quarantine commands, driven as a user would."""

from __future__ import annotations

import json
import mailbox
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import CLI, LABELED
from mails import mail, png

KEYS = {"read", "created", "appended", "duplicates", "ignored", "quarantined"}


def write(path: Path, raw: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def test_import_samples_twice_is_idempotent(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "in"
    for eml in sorted((LABELED / "dev").glob("*.eml"))[:8]:
        write(src / eml.name, eml.read_bytes())
    write(src / "README.txt", b"not a message: skipped in a directory walk")
    first = cli.json("import", str(src))
    assert set(first) >= KEYS
    assert first["read"] == 8 and first["created"] == 8 and first["quarantined"] == 0
    second = cli.json("import", str(src))
    assert second["read"] == 8 and second["created"] == 0 and second["duplicates"] == 8
    assert len(cli.json("tickets", "list")) == 8


def test_ticket_shape_with_attachments(cli: CLI, tmp_path: Path) -> None:
    raw = mail(
        subject="Fehlermeldung beim Export",
        html='<p>Siehe Bild</p><img src="cid:s1">',
        inline_images=[("s1", png(800, 500))],
        attachments=[("log.txt", "text/plain", b"trace")],
        message_id="<first@kunde.example>",
    )
    report = cli.json("import", str(write(tmp_path / "a.eml", raw)))
    assert report["created"] == 1
    [row] = cli.json("tickets", "list")
    assert row["number"] == "DM-000001"
    assert row["subject"] == "Fehlermeldung beim Export"
    assert row["status"] == "new"
    assert row["requester"] == "erika@kunde.example"
    assert row["organisation"] == "kunde.example"
    assert row["article_count"] == 1 and row["attachment_count"] == 2
    for key in ("level", "category", "priority", "language", "created_at"):
        assert key in row
    ticket = cli.json("tickets", "show", "DM-000001")
    [article] = ticket["articles"]
    assert article["direction"] == "in"
    assert article["sender"] == "erika@kunde.example"
    assert article["message_id"] == "first@kunde.example"
    assert "Drucker" in article["text"]
    atts = {a["filename"]: a for a in article["attachments"]}
    assert atts["s1.png"]["is_inline"] and atts["s1.png"]["is_screenshot"]
    assert atts["log.txt"] == atts["log.txt"] | {
        "content_type": "text/plain",
        "size": 5,
        "is_inline": False,
        "is_screenshot": False,
    }
    assert len(atts["log.txt"]["sha256"]) == 64
    assert [e["kind"] for e in ticket["events"]] == ["created"]
    assert cli.json("tickets", "show", "1")["number"] == "DM-000001"


def test_reply_is_appended_and_duplicates_are_counted(cli: CLI, tmp_path: Path) -> None:
    first = mail(message_id="<m1@kunde.example>")
    reply = mail(
        subject="Re: Drucker druckt nicht",
        body="Noch immer kaputt.",
        message_id="<m2@kunde.example>",
        in_reply_to="<m1@kunde.example>",
        references="<m1@kunde.example>",
    )
    write(tmp_path / "in" / "1.eml", first)
    write(tmp_path / "in" / "2.eml", reply)
    report = cli.json("import", str(tmp_path / "in"))
    assert (report["created"], report["appended"]) == (1, 1)
    # the same message again, relayed (other trace headers): a duplicate, nothing new
    relayed = b"Received: from relay.example by mx; Tue, 3 Nov 2026 08:00:00 +0000\r\n" + first
    report = cli.json("import", str(write(tmp_path / "relayed.eml", relayed)))
    assert report == report | {"read": 1, "duplicates": 1, "created": 0}
    # same Message-ID, other content: kept as a new message, with a warning
    clash = mail(message_id="<m1@kunde.example>", body="Ganz anderer Inhalt.")
    report = cli.json("import", str(write(tmp_path / "clash.eml", clash)))
    assert report["created"] == 1
    tickets = cli.json("tickets", "list")
    assert [t["article_count"] for t in tickets] == [1, 2]
    newest = cli.json("tickets", "show", tickets[0]["number"])
    assert "warnings" in newest["events"][0]["detail"]


def test_mbox_and_maildir(cli: CLI, tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "backup.mbox")
    for i in range(3):
        box.add(mail(subject=f"mbox {i}", message_id=f"<mb{i}@kunde.example>"))
    box.close()
    (tmp_path / "tree").mkdir()
    md = mailbox.Maildir(tmp_path / "tree" / "Maildir", create=True)
    for i in range(2):
        md.add(mail(subject=f"maildir {i}", message_id=f"<md{i}@kunde.example>"))
    md.close()
    report = cli.json("import", str(tmp_path / "backup.mbox"), str(tmp_path / "tree"))
    assert report["read"] == 5 and report["created"] == 5
    subjects = sorted(t["subject"] for t in cli.json("tickets", "list"))
    assert subjects == ["maildir 0", "maildir 1", "mbox 0", "mbox 1", "mbox 2"]


def test_quarantine_keeps_raw_bytes_and_reason(cli: CLI, tmp_path: Path) -> None:
    bad = b"\x00\x01 this has no headers at all"
    report = cli.json("import", str(write(tmp_path / "bad.eml", bad)))
    assert report["quarantined"] == 1 and report["created"] == 0
    [row] = cli.json("quarantine", "list")
    assert row["stage"] == "parse" and "no headers" in row["reason"]
    shown = cli.json("quarantine", "show", str(row["id"]))
    assert shown["traceback"] and shown["source"].endswith("bad.eml")
    code, _, err = cli("quarantine", "export", str(row["id"]), str(tmp_path / "out.eml"))
    assert code == 0, err
    assert (tmp_path / "out.eml").read_bytes() == bad
    code, out, _ = cli("quarantine", "retry", str(row["id"]))
    assert code == 1 and "quarantined" in out  # still broken: back in quarantine


def test_oversized_message_is_quarantined_not_crashed(
    cli: CLI, tmp_path: Path, config_file: Path
) -> None:
    text = config_file.read_text().replace("[storage]\n", "[storage]\nmax_attachment_mb = 0.01\n")
    config_file.write_text(text, encoding="utf-8")
    raw = mail(attachments=[("big.bin", "application/octet-stream", b"\x00" * 50_000)])
    report = cli.json("import", str(write(tmp_path / "big.eml", raw)))
    assert report["quarantined"] == 1
    [row] = cli.json("quarantine", "list")
    assert "big.bin" in row["reason"] and "over the cap" in row["reason"]


def test_user_errors_are_one_line(cli: CLI, tmp_path: Path) -> None:
    code, _, err = cli("import", str(tmp_path / "missing"))
    assert code == 2 and err.startswith("mailtriage: error: ") and err.count("\n") == 1
    assert "no such file" in err
    code, _, err = cli("tickets", "show", "DM-999999")
    assert code == 2 and "no ticket DM-999999" in err
    code, _, err = cli("tickets", "show", "banana")
    assert code == 2 and "not a ticket number" in err
    code, _, err = cli("quarantine", "show", "424242")
    assert code == 2 and "no inbound message 424242" in err


def test_copy_of_sample_dir_round_trip(cli: CLI, tmp_path: Path) -> None:
    shutil.copytree(Path(__file__).parent.parent / "samples", tmp_path / "samples")
    report = cli.json("import", str(tmp_path / "samples"))
    assert report["created"] + report["appended"] == report["read"] > 0


def test_replies_in_later_chunks_find_their_tickets(
    cli: CLI, config_file: Path, tmp_path: Path
) -> None:
    """Sixty messages go through the parser pool in chunks of eight, several in flight
    at once; the thirty replies, read after the messages they answer and in other
    chunks, must each be filed on their ticket (stored in claim order)."""
    # a pool of two (the fixture's config parses in the worker itself)
    text = config_file.read_text()
    assert "processes = 1" in text
    config_file.write_text(text.replace("processes = 1", "processes = 2"), encoding="utf-8")
    src = tmp_path / "in"
    for n in range(30):
        first = mail(
            subject=f"Drucker {n} druckt nicht",
            sender=f"Kunde {n} <kunde{n}@firma{n}.example>",
            message_id=f"<first{n}@firma{n}.example>",
        )
        reply = mail(
            subject=f"Re: Drucker {n} druckt nicht",
            body="Noch immer kaputt.",
            sender=f"Kunde {n} <kunde{n}@firma{n}.example>",
            message_id=f"<reply{n}@firma{n}.example>",
            in_reply_to=f"<first{n}@firma{n}.example>",
            references=f"<first{n}@firma{n}.example>",
        )
        write(src / f"a{n:02d}.eml", first)
        write(src / f"b{n:02d}.eml", reply)
    report = cli.json("import", str(src))
    assert (report["created"], report["appended"], report["pending"]) == (30, 30, 0)
    assert sorted(t["article_count"] for t in cli.json("tickets", "list")) == [2] * 30


# `mailtriage import` in a child process that notes what was imported when the fork
# server was started, and which fork server the pool used.
_OBSERVED = """
import json, sys
from multiprocessing import forkserver
from mailtriage.cli import main
from mailtriage.runners import pool
seen = []
real = pool.start_fork_server
def start():
    heavy = ("mailtriage.app", "mailtriage.pipeline.analyse", "sqlalchemy")
    seen.append(sorted(name for name in heavy if name in sys.modules))
    real()
    seen.append(forkserver._forkserver._forkserver_pid)
pool.start_fork_server = start
code = main(sys.argv[1:])
print(json.dumps({"seen": seen, "server": forkserver._forkserver._forkserver_pid}))
sys.exit(code)
"""


def test_an_import_of_many_starts_the_fork_server_before_its_heavy_imports(
    config_file: Path, tmp_path: Path
) -> None:
    """A directory: the parser pool's fork server starts before the command imports
    the database and the pipeline (it imports them itself meanwhile), and the pool
    forks from that server. One file is filed in-process: no fork server at all."""
    config_file.write_text(config_file.read_text().replace("processes = 1", "processes = 2"))
    src = tmp_path / "in"
    for n in range(8):
        write(src / f"m{n}.eml", mail(subject=f"Drucker {n}", message_id=f"<fs{n}@kunde.example>"))

    def run(path: Path) -> tuple[dict[str, int], dict[str, Any]]:
        command = ["--config", str(config_file), "import", str(path), "--json"]
        done = subprocess.run(
            [sys.executable, "-c", _OBSERVED, *command],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        report, observed = (json.loads(line) for line in done.stdout.splitlines())
        return report, observed

    report, observed = run(src)
    assert (report["created"], report["pending"]) == (8, 0)
    assert observed["seen"] == [[], observed["server"]] and observed["server"] is not None
    one = write(tmp_path / "one" / "one.eml", mail(message_id="<fs-one@kunde.example>"))
    report, observed = run(one)
    assert (report["created"], report["pending"]) == (1, 0)
    assert observed == {"seen": [], "server": None}


def test_a_database_held_past_the_wait_is_one_line_and_loses_nothing(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """SQLite: while another process keeps a write transaction open (it holds the write
    gate), intake waits WAIT_SECONDS (30 s; 0.3 s here), then the command ends
    with one line naming the cause, no traceback; the file is imported once the
    database is free again."""
    from mailtriage.cli import main

    from conftest import stuck_writer

    config = tmp_path / "sqlite.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "mt.db"}"\n'
        f'[storage]\ndir = "{tmp_path / "var"}"\n[triage]\nocr = false\n',
        encoding="utf-8",
    )
    source = write(tmp_path / "in" / "one.eml", mail(subject="Drucker", body="Geht nicht."))
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    with stuck_writer(tmp_path / "mt.db", monkeypatch):
        capsys.readouterr()
        code = main(["--config", str(config), "import", str(source)])
        out, err = capsys.readouterr()
    assert code == 2
    assert (
        err
        == "mailtriage: error: database error: the database stayed busy for 0.3 s (write gate)\n"
    )
    assert "Traceback" not in out + err
    assert source.exists()
    assert main(["--config", str(config), "import", str(source), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["read"], report["created"], report["pending"]) == (1, 1, 0)
