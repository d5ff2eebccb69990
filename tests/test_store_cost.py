"""The store step (issue 10): what it writes for a new ticket is what its history says,
and storing a mail costs a bounded number of SQL statements, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select

from mailtriage import worker as worker_module
from mailtriage.app import App
from mailtriage.sla import evaluate
from mailtriage.sla.settings import rules_from_settings
from mailtriage.store.models import Article, ArticleRef, Ticket
from mailtriage.store.sla_store import due_values, ticket_facts

from mails import mail, png


def test_a_new_tickets_due_times_are_those_its_history_gives(app: App) -> None:
    """The due times written with a new ticket (from the facts in hand) equal an
    evaluation of what the database holds about it afterwards."""
    app.inbox.accept(
        mail(subject="Server ausgefallen", body="Seit heute früh steht alles, dringend!"), "a"
    )
    app.inbox.accept(
        mail(
            sender="Max Muster <max.muster@gmail.com>",
            subject="Passwort ändern",
            body="Wie ändere ich mein Passwort im Portal?",
        ),
        "b",
    )
    assert app.worker().drain()["created"] == 2
    rules = rules_from_settings(app.settings.sla)
    with app.factory() as session:
        tickets = session.scalars(select(Ticket).order_by(Ticket.id)).all()
        assert [t.organisation_id is None for t in tickets] == [False, True]  # freemail
        for ticket in tickets:
            facts = ticket_facts(session, ticket.id)
            assert facts is not None
            want = due_values(evaluate(facts, rules, ticket.created_at))
            assert {k: getattr(ticket, k) for k in want} == want
            assert ticket.sla_first_response_due is not None


def test_storing_a_mail_takes_a_bounded_number_of_statements(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[int] = []
    real = worker_module.store_analysis

    def counting(*args: Any, **kwargs: Any) -> Any:
        statements = [0]

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            # (the transaction and the worker's savepoint per message are not the store's)
            if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
                statements[0] += 1

        event.listen(app.engine, "before_cursor_execute", count)
        try:
            return real(*args, **kwargs)
        finally:
            event.remove(app.engine, "before_cursor_execute", count)
            counted.append(statements[0])

    monkeypatch.setattr(worker_module, "store_analysis", counting)
    worker = app.worker()
    app.inbox.accept(
        mail(
            message_id="<first@kunde.example>",
            attachments=[("fehler.png", "image/png", png(64, 48))],
        ),
        "first",
    )
    [created] = worker.run_once()
    app.inbox.accept(
        mail(
            subject="Re: Drucker druckt nicht",
            body="Nachtrag: auch nach dem Neustart nicht.",
            message_id="<second@kunde.example>",
            in_reply_to="<first@kunde.example>",
            references="<first@kunde.example>",
        ),
        "second",
    )
    [appended] = worker.run_once()
    assert (created.outcome, appended.outcome) == ("created", "appended")
    assert appended.ticket_id == created.ticket_id
    with app.factory() as session:
        articles = session.scalars(select(Article).order_by(Article.id)).all()
        assert [a.message_key for a in articles] == [
            "first@kunde.example",
            "second@kunde.example",
        ]
        assert len(articles[0].attachments) == 1
        refs = session.execute(
            select(ArticleRef.article_id, ArticleRef.message_key, ArticleRef.first).order_by(
                ArticleRef.article_id, ArticleRef.message_key
            )
        ).all()
        first, second = articles[0].id, articles[1].id
        assert [tuple(r) for r in refs] == [
            (first, "first@kunde.example", True),
            (second, "first@kunde.example", None),
            (second, "second@kunde.example", True),
        ]
    # New ticket: facts (2), requester (1), organisation, contact, ticket, article,
    # attachment, refs, event, inbound row, acknowledgement. Reply: facts (4), ticket,
    # article, refs, event, inbound row, SLA history (2). Before the Core statements
    # (ORM objects and flushes) these took 19 and 18.
    assert counted[0] <= 12 and counted[1] <= 11, counted
