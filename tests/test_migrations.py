"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailtriage.app import App
from mailtriage.config import Settings
from mailtriage.store import db
from mailtriage.store.models import Base


def test_models_match_migrations(settings: Settings) -> None:
    with App.from_settings(settings) as app:
        db.upgrade(app.engine)  # the Alembic scripts, not the new-database shortcut
        _assert_models_match(app)


def _assert_models_match(app: App) -> None:
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


def _schema(engine: sa.Engine) -> dict[str, Any]:
    """Everything the inspector reports, names of constraints and indexes included."""
    insp = sa.inspect(engine)
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table),
            "fks": sorted(str(sorted(fk.items())) for fk in insp.get_foreign_keys(table)),
            "indexes": sorted(str(sorted(i.items())) for i in insp.get_indexes(table)),
            "uniques": sorted(str(sorted(u.items())) for u in insp.get_unique_constraints(table)),
        }
        for table in sorted(insp.get_table_names())
    }


def test_a_new_database_gets_exactly_the_migrated_schema(settings: Settings) -> None:
    """`db.prepare` creates an empty database from the models (sparing it the import of
    Alembic); the result must be what the migrations make, and Alembic must see it at
    head. A future migration that drops a constraint by name relies on this."""
    with App.from_settings(settings) as app:
        db.prepare(app.engine)
        created = _schema(app.engine)
        assert db.current_revision(app.engine) == db.head_revision(app.engine)
        db.check_schema(app.engine)
        db.upgrade(app.engine)  # nothing to do
        with app.engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.exec_driver_sql("DROP TABLE alembic_version")
        assert db.table_names(app.engine) == []
        db.upgrade(app.engine)
        assert _schema(app.engine) == created
        _assert_models_match(app)
        db.prepare(app.engine)  # current: nothing happens
        assert _schema(app.engine) == created
