"""Retention: `mailtriage purge` deletes raw messages and attachments of long-closed
tickets and keeps the tickets, their text and events, and every file another message
still uses (blobs are content-addressed). On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from mailtriage.app import App
from mailtriage.config import Settings
from mailtriage.store.models import Event, Inbound, Ticket, utcnow
from mailtriage.store.outbound_models import Outbox

from conftest import CLI, make_settings, stored_raw
from mails import mail

PDF = b"%PDF-1.4 invoice of Erika Muster, IBAN DE02 1203 0000 0000 2020 51\n" * 50
LOG = b"2026-11-02 09:30 user erika logged in from 192.0.2.7\n" * 40


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Every raw message a blob file here (storage.inline_max_kb = 0), so the purge has
    files to delete; test_purge_clears_raw_bytes_kept_in_the_row covers the default."""
    return make_settings(tmp_path, database_url, storage={"inline_max_kb": 0})


def blob(settings: Settings, sha: str) -> Path:
    return settings.storage_dir / "blobs" / sha[:2] / sha


def set_ticket(app: App, ticket_id: int, *, status: str, age_days: float) -> None:
    with app.factory() as session, session.begin():
        session.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id)
            .values(status=status, updated_at=utcnow() - timedelta(days=age_days))
        )


def raw_sha(cli: CLI, inbound_id: int) -> str:
    return str(cli.json("quarantine", "show", str(inbound_id))["raw_sha256"])


def shas(ticket: dict[str, Any]) -> list[str]:
    return [a["sha256"] for art in ticket["articles"] for a in art["attachments"]]


def events(app: App, ticket_id: int) -> list[Event]:
    with app.factory() as session:
        return list(
            session.scalars(
                select(Event).where(Event.ticket_id == ticket_id, Event.kind == "purged")
            )
        )


@pytest.fixture
def tickets(cli: CLI, app: App, tmp_path: Path) -> dict[str, Any]:
    """Five tickets: 1 and 2 share an attachment; 4 carries 3's raw message as an
    attachment; every acknowledgement sent except 5's."""
    third = mail(subject="Passwort vergessen", sender="Max <max@firma.example>")
    raws = [
        mail(
            subject="Rechnung falsch",
            attachments=[("rechnung.pdf", "application/pdf", PDF)],
        ),
        mail(
            subject="Noch eine Rechnung",
            sender="Hans <hans@andere.example>",
            attachments=[
                ("rechnung.pdf", "application/pdf", PDF),
                ("login.log", "application/octet-stream", LOG),
            ],
        ),
        third,
        mail(
            subject="Weitergeleitet: Passwort vergessen",
            sender="Chefin <chefin@firma.example>",
            attachments=[("original.bin", "application/octet-stream", third)],
        ),
        mail(subject="Drucker", sender="Otto <otto@dritte.example>"),
    ]
    for i, raw in enumerate(raws):
        (tmp_path / f"{i}.eml").write_bytes(raw)
        assert cli.json("import", str(tmp_path / f"{i}.eml"))["created"] == 1
    assert cli.json("outbox", "send")["sent"] == 5
    with app.factory() as session, session.begin():
        session.execute(update(Outbox).where(Outbox.ticket_id == 5).values(status="pending"))
    set_ticket(app, 1, status="closed", age_days=40)
    set_ticket(app, 2, status="closed", age_days=5)
    set_ticket(app, 3, status="closed", age_days=400)
    set_ticket(app, 4, status="resolved", age_days=400)
    set_ticket(app, 5, status="closed", age_days=400)
    shown = {n: cli.json("tickets", "show", str(n)) for n in range(1, 6)}
    return {"raws": raws, "shown": shown, "raw": {n: raw_sha(cli, n) for n in range(1, 6)}}


def test_purge_closed_tickets(
    cli: CLI, app: App, settings: Settings, config_file: Path, tickets: dict[str, Any]
) -> None:
    [pdf] = shas(tickets["shown"][1])
    pdf2, log_sha = shas(tickets["shown"][2])
    [forwarded] = shas(tickets["shown"][4])
    assert pdf == pdf2 and forwarded == tickets["raw"][3]  # the shared blobs
    everything = [*tickets["raw"].values(), pdf, log_sha]
    assert all(blob(settings, s).exists() for s in everything)

    # retention off (the default): nothing happens
    assert cli.json("purge") == {"dry_run": False, "disabled": True, "tickets": []}

    dry = cli.json("purge", "--older-than-days", "30", "--dry-run")
    assert dry["dry_run"] is True
    assert dry["tickets"] == ["DM-000001", "DM-000003"]
    assert dry["skipped"] == ["DM-000005"]  # its acknowledgement is not sent yet
    assert (dry["messages"], dry["attachments"]) == (2, 1)
    # ticket 1's raw goes; its PDF is also ticket 2's, ticket 3's raw is 4's attachment
    assert (dry["blobs_deleted"], dry["blobs_shared"]) == (1, 2)
    assert all(blob(settings, s).exists() for s in everything)  # dry: nothing changed
    assert events(app, 1) == []

    config_file.write_text(
        config_file.read_text() + "[retention]\npurge_closed_after_days = 30\n", encoding="utf-8"
    )
    done = cli.json("purge")
    assert {k: v for k, v in done.items() if k not in ("dry_run", "cutoff")} == {
        k: v for k, v in dry.items() if k not in ("dry_run", "cutoff")
    }
    assert done["bytes_freed"] == len(tickets["raws"][0])  # ticket 1's raw message
    assert not blob(settings, tickets["raw"][1]).exists()
    for kept in (pdf, tickets["raw"][3], tickets["raw"][2], tickets["raw"][4], log_sha):
        assert blob(settings, kept).exists(), kept

    # the ticket, its text and its events stay; the attachment is marked purged
    after = cli.json("tickets", "show", "1")
    before = tickets["shown"][1]
    assert after["subject"] == before["subject"] and after["status"] == "closed"
    assert after["articles"][0]["text"] == before["articles"][0]["text"]
    [att] = after["articles"][0]["attachments"]
    assert att["purged"] is True and att["filename"] == "rechnung.pdf"
    assert att["size"] == before["articles"][0]["attachments"][0]["size"]
    assert {e["kind"] for e in before["events"]} <= {e["kind"] for e in after["events"]}
    [event] = events(app, 1)
    assert event.detail["messages"] == 1 and event.detail["attachments"] == 1
    assert event.actor == "retention"
    assert cli.json("quarantine", "show", "1")["purged_at"] is not None
    code, _, err = cli("quarantine", "export", "1", str(config_file.parent / "x.eml"))
    assert code == 2 and "raw bytes were purged" in err and err.count("\n") == 1

    # a second run finds nothing new
    again = cli.json("purge")
    assert again["tickets"] == [] and again["blobs_deleted"] == 0
    assert len(events(app, 1)) == 1

    # the same bytes delivered again are still known: no new ticket; the raw file the
    # redelivery wrote again goes at the next run
    (config_file.parent / "again.eml").write_bytes(tickets["raws"][0])
    assert cli.json("import", str(config_file.parent / "again.eml"))["duplicates"] == 1
    assert blob(settings, tickets["raw"][1]).exists()
    swept = cli.json("purge")
    assert (swept["tickets"], swept["reappeared"], swept["blobs_deleted"]) == ([], 1, 1)
    assert not blob(settings, tickets["raw"][1]).exists()
    assert cli.json("tickets", "list", "--status", "closed")[-1]["number"] == "DM-000001"

    # once ticket 2 is old too, the PDF has no user left and goes
    set_ticket(app, 2, status="closed", age_days=45)
    last = cli.json("purge")
    assert last["tickets"] == ["DM-000002"]
    assert not blob(settings, pdf).exists() and not blob(settings, log_sha).exists()
    assert blob(settings, tickets["raw"][3]).exists()  # ticket 4 (not closed) uses it


def test_purge_human_output_and_bad_option(cli: CLI, app: App, tickets: dict[str, Any]) -> None:
    code, out, _ = cli("purge", "--older-than-days", "30", "--dry-run")
    assert code == 0
    assert out.startswith("would purge 2 tickets closed before ")
    assert "DM-000001 DM-000003" in out and "left for later (mail still to send): DM-000005" in out
    code, _, err = cli("purge", "--older-than-days", "0")
    assert code == 2 and "--older-than-days: expected an integer >= 1, got 0" in err


def test_purge_clears_raw_bytes_kept_in_the_row(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the default storage.inline_max_kb a small message's bytes live in its
    inbound row: the purge empties the row, and export then says they were purged."""
    base = make_settings(tmp_path, database_url)
    config = tmp_path / "inline.toml"
    config.write_text(
        f'[database]\nurl = "{base.database_url}"\n[storage]\ndir = "{base.storage.dir}"\n'
        "[worker]\nprocesses = 1\n[retention]\npurge_closed_after_days = 30\n",
        encoding="utf-8",
    )
    cli = CLI(config, capsys)
    (tmp_path / "m.eml").write_bytes(mail(subject="Drucker", sender="Otto <otto@x.example>"))
    assert cli.json("import", str(tmp_path / "m.eml"))["created"] == 1
    assert cli.json("outbox", "send")["sent"] == 1
    with App.from_settings(base) as app:
        set_ticket(app, 1, status="closed", age_days=40)
        assert stored_raw(app, 1).startswith(b"From: ")
        assert not blob(base, raw_sha(cli, 1)).exists()  # kept in the row, no file
        assert cli.json("purge")["tickets"] == ["DM-000001"]
        with app.factory() as session:
            row = session.get(Inbound, 1)
            assert row is not None and row.purged_at is not None and row.raw is None
    code, _, err = cli("quarantine", "export", "1", str(tmp_path / "out.eml"))
    assert code != 0 and "purged" in err
