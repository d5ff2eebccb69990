"""Replies stored before their parent: the parent adopts their ticket (merge).

Import counts: ``created`` counts the tickets messages created in that run, also one
merged later (it was created, and its message's outcome stays "created"); a parent
that adopts an early reply's ticket counts as created too. So ``created`` minus the
merges is the number of live tickets the run added.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mailtriage.app import App
from mailtriage.backfill import import_paths
from mailtriage.store.models import Article, ArticleRef, Event, Inbound, InboundStatus, Ticket
from mailtriage.store.outbound_models import Outbox, OutboxStatus

from conftest import CLI, make_settings
from mails import mail

PARENT = "<p1@kunde.example>"


def write(path: Path, raw: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def parent(mid: str = PARENT, **kw: Any) -> bytes:
    return mail(message_id=mid, **kw)


def reply(mid: str, to: str, refs: str | None = None, **kw: Any) -> bytes:
    kw.setdefault("subject", "Re: Drucker druckt nicht")
    kw.setdefault("body", f"Antwort {mid}: noch immer kaputt.")
    return mail(message_id=mid, in_reply_to=to, references=refs or to, **kw)


def tickets(cli: CLI, *args: str) -> list[dict[str, Any]]:
    return list(cli.json("tickets", "list", *args))


def live(cli: CLI) -> list[dict[str, Any]]:
    return [t for t in tickets(cli) if t["status"] != "merged"]


def test_reply_before_parent_is_merged_into_parents_ticket(
    cli: CLI, app: App, tmp_path: Path
) -> None:
    r = cli.json("import", str(write(tmp_path / "r.eml", reply("<r1@kunde.example>", PARENT))))
    assert r["created"] == 1
    p = cli.json("import", str(write(tmp_path / "p.eml", parent())))
    assert p["created"] == 1  # the parent's ticket; the reply's ticket is merged into it
    [new] = live(cli)
    assert new["article_count"] == 2 and new["subject"] == "Drucker druckt nicht"
    [old] = tickets(cli, "--status", "merged")
    assert old["article_count"] == 0 and old["id"] < new["id"]
    shown_new = cli.json("tickets", "show", new["number"])
    assert {a["message_id"] for a in shown_new["articles"]} == {
        "p1@kunde.example",
        "r1@kunde.example",
    }
    [merged_in] = [e for e in shown_new["events"] if e["kind"] == "merged"]
    assert merged_in["detail"]["from"] == old["id"]
    assert merged_in["detail"]["reason"] == "reply arrived before its parent <p1@kunde.example>"
    shown_old = cli.json("tickets", "show", old["number"])
    assert shown_old["status"] == "merged"
    [merged_out] = [e for e in shown_old["events"] if e["kind"] == "merged"]
    assert merged_out["detail"]["into"] == new["id"]
    with app.factory() as session:
        # the old ticket's acknowledgement was still waiting: skipped, with the reason
        acks = {o.ticket_id: o for o in session.scalars(select(Outbox))}
        assert acks[old["id"]].status == OutboxStatus.SKIPPED
        assert "merged into ticket" in (acks[old["id"]].last_error or "")
        assert acks[new["id"]].status == OutboxStatus.PENDING
        # the reply's inbound row points to where its article lives now
        inbound = session.scalars(select(Inbound).order_by(Inbound.id)).all()
        assert [i.ticket_id for i in inbound] == [new["id"], new["id"]]
        assert [i.outcome for i in inbound] == ["created", "created"]
    # a later reply to either message lands in the live ticket
    later = reply("<r2@kunde.example>", "<r1@kunde.example>", f"{PARENT} <r1@kunde.example>")
    assert cli.json("import", str(write(tmp_path / "r2.eml", later)))["appended"] == 1
    assert [t["article_count"] for t in live(cli)] == [3]


def test_sent_acknowledgement_stays_sent(cli: CLI, app: App, tmp_path: Path) -> None:
    cli.json("import", str(write(tmp_path / "r.eml", reply("<r1@kunde.example>", PARENT))))
    with app.factory() as session, session.begin():
        session.execute(Outbox.__table__.update().values(status=OutboxStatus.SENT))
    cli.json("import", str(write(tmp_path / "p.eml", parent())))
    [old] = tickets(cli, "--status", "merged")
    with app.factory() as session:
        statuses = {o.ticket_id: o.status for o in session.scalars(select(Outbox))}
    assert statuses[old["id"]] == OutboxStatus.SENT
    assert len(statuses) == 2


def test_chain_in_reverse_order_ends_in_one_ticket(cli: CLI, tmp_path: Path) -> None:
    r1, r2 = "<r1@kunde.example>", "<r2@kunde.example>"
    for name, raw in [
        ("r2", reply(r2, r1, f"{PARENT} {r1}")),
        ("r1", reply(r1, PARENT)),
        ("p", parent()),
    ]:
        cli.json("import", str(write(tmp_path / f"{name}.eml", raw)))
    [one] = live(cli)
    assert one["article_count"] == 3 and one["subject"] == "Drucker druckt nicht"
    assert all(t["article_count"] == 0 for t in tickets(cli, "--status", "merged"))


def test_chain_without_references_links_through_the_middle(cli: CLI, tmp_path: Path) -> None:
    """R2 names only R1 (no References): R1 adopts R2's ticket, then P adopts R1's."""
    r1, r2 = "<r1@kunde.example>", "<r2@kunde.example>"
    for name, raw in [("r2", reply(r2, r1)), ("r1", reply(r1, PARENT)), ("p", parent())]:
        cli.json("import", str(write(tmp_path / f"{name}.eml", raw)))
    [one] = live(cli)
    assert one["article_count"] == 3
    assert len(tickets(cli, "--status", "merged")) == 2


def test_sibling_replies_before_parent_join_one_ticket(cli: CLI, tmp_path: Path) -> None:
    for i in (1, 2):
        raw = reply(f"<s{i}@kunde.example>", PARENT)
        cli.json("import", str(write(tmp_path / f"s{i}.eml", raw)))
    assert [t["article_count"] for t in live(cli)] == [2]  # the second joined the first
    cli.json("import", str(write(tmp_path / "p.eml", parent())))
    assert [t["article_count"] for t in live(cli)] == [3]


def test_replies_from_two_people_before_parent_are_both_adopted(cli: CLI, tmp_path: Path) -> None:
    """A reply from someone else does not join another sender's early ticket (it
    merely shares a reference); the parent adopts both tickets, since both were on
    its Cc and replied to its sender."""
    for i, who in ((1, "Anna <anna@kunde.example>"), (2, "Bert <bert@kunde.example>")):
        raw = mail(
            message_id=f"<s{i}@kunde.example>",
            in_reply_to=PARENT,
            references=PARENT,
            subject="Re: Drucker druckt nicht",
            body=f"Antwort {i}: noch immer kaputt.",
            sender=who,
            to="erika@kunde.example, support@dataandmore.com",
        )
        cli.json("import", str(write(tmp_path / f"s{i}.eml", raw)))
    assert [t["article_count"] for t in live(cli)] == [1, 1]
    cc = {"Cc": "anna@kunde.example, bert@kunde.example"}
    cli.json("import", str(write(tmp_path / "p.eml", parent(headers=cc))))
    assert [t["article_count"] for t in live(cli)] == [3]
    assert len(tickets(cli, "--status", "merged")) == 2


def test_early_replies_of_people_not_on_the_parent_are_not_adopted(
    cli: CLI, tmp_path: Path
) -> None:
    """Adoption needs the early reply's sender to be the parent's sender, or on its
    To/Cc and replying to its sender: otherwise each ticket stays as it is."""
    raw = reply("<s1@kunde.example>", PARENT, sender="Anna <anna@kunde.example>")
    cli.json("import", str(write(tmp_path / "s1.eml", raw)))
    # on the parent's Cc, but her reply was not to the parent's sender
    raw = reply("<s2@kunde.example>", PARENT, sender="Bert <bert@kunde.example>")
    cli.json("import", str(write(tmp_path / "s2.eml", raw)))
    cc = {"Cc": "bert@kunde.example"}
    cli.json("import", str(write(tmp_path / "p.eml", parent(headers=cc))))
    assert [t["article_count"] for t in live(cli)] == [1, 1, 1]
    assert tickets(cli, "--status", "merged") == []


def test_reply_after_parent_still_appends(cli: CLI, tmp_path: Path) -> None:
    cli.json("import", str(write(tmp_path / "p.eml", parent())))
    report = cli.json("import", str(write(tmp_path / "r.eml", reply("<r1@x.example>", PARENT))))
    assert (report["created"], report["appended"]) == (0, 1)
    [one] = tickets(cli)
    assert one["status"] == "new" and one["article_count"] == 2
    shown = cli.json("tickets", "show", one["number"])
    assert [e["kind"] for e in shown["events"]] == ["created", "article_added"]


def test_corrected_ticket_of_a_stranger_is_not_merged(cli: CLI, tmp_path: Path) -> None:
    stranger = mail(
        subject="Ganz anderes Thema",
        sender="Max Fremd <max@fremd.example>",
        body="Unser Scanner ist kaputt.",
        message_id="<x1@fremd.example>",
        references=PARENT,  # merely quotes the Message-ID
    )
    cli.json("import", str(write(tmp_path / "x.eml", stranger)))
    [s] = tickets(cli)
    code, _, err = cli("tickets", "set", s["number"], "--priority", "high", "--by", "agent")
    assert code == 0, err
    report = cli.json("import", str(write(tmp_path / "p.eml", parent())))
    assert report["created"] == 1
    rows = tickets(cli)
    assert sorted(t["status"] for t in rows) == ["new", "new"]
    assert [t["article_count"] for t in rows] == [1, 1]
    shown = cli.json("tickets", "show", rows[0]["number"])
    assert any("is kept: corrected by agent" in r for r in shown["events"][0]["detail"]["reasons"])


def test_ticket_no_longer_new_is_not_merged(cli: CLI, app: App, tmp_path: Path) -> None:
    cli.json("import", str(write(tmp_path / "r.eml", reply("<r1@kunde.example>", PARENT))))
    with app.factory() as session, session.begin():
        session.execute(Ticket.__table__.update().values(status="open"))
    cli.json("import", str(write(tmp_path / "p.eml", parent())))
    assert sorted(t["status"] for t in tickets(cli)) == ["new", "open"]


def test_later_article_of_an_unrelated_ticket_does_not_pull_it_in(cli: CLI, tmp_path: Path) -> None:
    """Only the first inbound article of a ticket counts as an early reply."""
    cli.json("import", str(write(tmp_path / "a.eml", mail(message_id="<a@kunde.example>"))))
    follow = mail(
        message_id="<a2@kunde.example>",
        in_reply_to="<a@kunde.example>",
        references=f"{PARENT} <a@kunde.example>",
    )
    cli.json("import", str(write(tmp_path / "a2.eml", follow)))
    cli.json("import", str(write(tmp_path / "p.eml", parent(subject="Anderes"))))
    assert sorted(t["article_count"] for t in tickets(cli)) == [1, 2]
    assert all(t["status"] == "new" for t in tickets(cli))


def test_one_import_with_reply_first_counts_consistently(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write(src / "1.eml", reply("<r1@kunde.example>", PARENT))
    write(src / "2.eml", parent())
    write(src / "3.eml", mail(message_id="<other@kunde.example>", subject="Anderes"))
    report = cli.json("import", str(src))
    assert report["read"] == 3
    assert report["created"] + report["appended"] == 3
    merged = tickets(cli, "--status", "merged")
    assert report["created"] - len(merged) == len(live(cli)) == 2


def _drain(app: App) -> None:
    """Process what is left (retries after a concurrent write) until all is done."""
    worker = app.worker()
    try:
        for _ in range(200):
            worker.drain()
            with app.factory() as session:
                left = session.scalar(
                    select(func.count(Inbound.id)).where(Inbound.status != InboundStatus.DONE)
                )
            if not left:
                return
            time.sleep(0.05)
        raise AssertionError(f"{left} messages still not done")
    finally:
        worker.close()


def test_concurrent_shuffled_threads_end_in_one_ticket_each(
    tmp_path: Path, database_url: str
) -> None:
    rng = random.Random(20261128)
    raws: list[bytes] = []
    for t in range(30):
        p, r1, r2 = (f"<t{t}-{i}@kunde{t}.example>" for i in range(3))
        sender = f"Kunde {t} <k{t}@kunde{t}.example>"
        raws += [
            mail(message_id=p, subject=f"Thema {t}", sender=sender),
            reply(r1, p, sender=sender, subject=f"Re: Thema {t}"),
            reply(r2, r1, f"{p} {r1}", sender=sender, subject=f"Re: Re: Thema {t}"),
        ]
    rng.shuffle(raws)
    for i, raw in enumerate(raws):
        write(tmp_path / "in" / f"{i:03d}.eml", raw)
    settings = make_settings(tmp_path, database_url, worker={"processes": 2, "batch_size": 16})
    with App.from_settings(settings) as app:
        app.prepare_database()
        report = import_paths(app, [tmp_path / "in"])
        assert report.read == 90 and report.quarantined == 0
        _drain(app)
        with app.factory() as session:
            statuses: dict[str, int] = {
                status: n
                for status, n in session.execute(
                    select(Ticket.status, func.count(Ticket.id)).group_by(Ticket.status)
                )
            }
            per_ticket = session.execute(
                select(Article.ticket_id, func.count(Article.id), func.min(Article.subject))
                .join(Ticket, Ticket.id == Article.ticket_id)
                .where(Ticket.status != "merged")
                .group_by(Article.ticket_id)
            ).all()
            merges = session.scalar(select(func.count(Event.id)).where(Event.kind == "merged"))
            refs = session.scalar(select(func.count()).select_from(ArticleRef))
            firsts = session.scalar(
                select(func.count()).select_from(ArticleRef).where(ArticleRef.first.is_(True))
            )
    assert sum(n for s, n in statuses.items() if s != "merged") == 30
    assert sorted(n for _, n, _ in per_ticket) == [3] * 30
    assert statuses.get("merged", 0) * 2 == merges
    assert (refs, firsts) == (30 * (1 + 2 + 3), 90)  # first carrier: each Message-ID once
