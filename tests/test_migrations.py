"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailtriage.app import App
from mailtriage.store import db
from mailtriage.store.models import Base


def test_models_match_migrations(app: App) -> None:
    with app.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert {
        "inbound",
        "ticket",
        "article",
        "attachment",
        "contact",
        "organisation",
        "event",
    } <= set(db.table_names(app.engine))


def test_upgrade_is_idempotent_and_checked(app: App) -> None:
    db.upgrade(app.engine)
    db.check_schema(app.engine)
    assert db.current_revision(app.engine) == db.head_revision(app.engine)
