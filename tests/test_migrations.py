"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailtriage.app import App
from mailtriage.config import Settings
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


def test_the_quick_schema_check_agrees_with_alembic(settings: Settings) -> None:
    """`schema_is_current` (one query, no Alembic import) lets commands skip the
    migration step; it must say "current" exactly when Alembic would."""
    with App.from_settings(settings) as app:
        assert db.script_heads() == {db.head_revision(app.engine)}
        assert not db.schema_is_current(app.engine)  # a new database: no version table
        db.upgrade(app.engine, "0004")
        assert not db.schema_is_current(app.engine)
        db.upgrade(app.engine)
        assert db.schema_is_current(app.engine)
