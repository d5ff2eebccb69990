"""Shared fixtures: settings on a temp dir, and the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from mailtriage.app import App
from mailtriage.cli import main
from mailtriage.config import Settings, settings_from_dict

TESTS = Path(__file__).parent
CORPUS = TESTS / "corpus"
LABELED = TESTS / "labeled"
PG_ENV = "MAILTRIAGE_TEST_DATABASE_URL"


def pg_base_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail(f"{PG_ENV} is not set, and in CI the PostgreSQL tests must run")
    pytest.skip(f"{PG_ENV} is not set: no PostgreSQL to test against")
    return None  # pragma: no cover


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    base = make_url(pg_base_url() or "")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mailtriage.db'}"
    return str(request.getfixturevalue("pg_url"))


def make_settings(tmp_path: Path, database_url: str | None = None, **sections: Any) -> Settings:
    data: dict[str, Any] = {
        "storage": {"dir": str(tmp_path / "var")},
        "worker": {"processes": 1, "retry_base_seconds": 0.01},
    }
    if database_url:
        data["database"] = {"url": database_url}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return settings_from_dict(data)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    with App.from_settings(settings) as application:
        application.prepare_database()
        yield application


@pytest.fixture
def config_file(tmp_path: Path, settings: Settings) -> Path:
    """A TOML config file for CLI tests, pointing at the test database and storage."""
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "{settings.database_url}"\n'
        f'[storage]\ndir = "{settings.storage.dir}"\n'
        f"inline_max_kb = {settings.storage.inline_max_kb}\n"
        f"[worker]\nprocesses = 1\n",
        encoding="utf-8",
    )
    return path


class CLI:
    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = config
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--config", str(self.config), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(config_file: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(config_file, capsys)


def replace_settings(settings: Settings, section: str, **values: Any) -> Settings:
    return dataclasses.replace(
        settings, **{section: dataclasses.replace(getattr(settings, section), **values)}
    )


def stored_raw(app: App, inbound_id: int) -> bytes:
    """The raw bytes the inbox keeps for a message (in its row or the blob store)."""
    from mailtriage.store.models import Inbound

    with app.factory() as session:
        row = session.get(Inbound, inbound_id)
        assert row is not None
        return app.inbox.raw(row)


@contextlib.contextmanager
def stuck_writer(database: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A writer that never ends its transaction holds the SQLite database's write gate
    (as a process stopped inside one would); the gate's wait is 0.3 s meanwhile."""
    from mailtriage.store import write_gate

    monkeypatch.setattr(write_gate, "WAIT_SECONDS", 0.3)
    fd = os.open(write_gate.gate_for(database).path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
