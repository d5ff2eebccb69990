"""Every real-world message in tests/corpus ingests: a ticket, a duplicate, an ignored
automated mail, or a quarantine with a reason. Nothing crashes, nothing is lost."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailtriage.app import App
from mailtriage.backfill import import_paths
from mailtriage.pipeline.parse import ParseError, parse_message
from mailtriage.store.models import Inbound

from conftest import CORPUS, make_settings

FILES = sorted(CORPUS.rglob("*.eml"))


def test_corpus_is_present() -> None:
    assert len(FILES) == 1408


def test_every_corpus_file_parses_or_raises_parse_error() -> None:
    failures = []
    for path in FILES:
        try:
            parse_message(path.read_bytes())
        except ParseError:
            continue
        except Exception as exc:  # the point of the test: nothing else may escape
            failures.append(f"{path.relative_to(CORPUS)}: {type(exc).__name__}: {exc}")
    assert failures == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_whole_corpus_imports(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, worker={"processes": 2})
    with App.from_settings(settings) as app:
        app.prepare_database()
        report = import_paths(app, [CORPUS])
        assert report.read == len(FILES)
        accounted = (
            report.created
            + report.appended
            + report.duplicates
            + report.ignored
            + report.quarantined
        )
        assert accounted == report.read and report.pending == 0
        with app.factory() as session:
            total = session.scalar(select(func.count(Inbound.id)))
            unexplained = session.scalars(
                select(Inbound.id).where(Inbound.status == "quarantined", Inbound.reason.is_(None))
            ).all()
        distinct = {hashlib.sha256(p.read_bytes()).hexdigest() for p in FILES}
        assert total == len(distinct)  # one durable row per distinct message
        assert unexplained == []
        # automated mail (bounces, lists, auto-replies) is recognised, not ticketed
        expectations = [
            json.loads(line) for line in (CORPUS / "expectations.jsonl").read_text().splitlines()
        ]
        automated = sum(1 for e in expectations if e["kind"] in ("bounce", "list", "auto_reply"))
        assert report.ignored >= automated * 0.95
        again = import_paths(app, [CORPUS])
        assert again.created == again.appended == 0
        assert again.duplicates == again.read
