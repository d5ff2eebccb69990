"""`mailtriage doctor` against real things: a broken config, Dovecot with a wrong
password, a port taken by mailtriage or by someone else, a relay up and down, a
database behind its migrations, and a good setup that passes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailtriage.app import App
from mailtriage.intake.smtp import SmtpListener
from relay import Relay

from conftest import make_settings
from servers import Dovecot, dovecot_server, free_port

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with dovecot_server() as server:
        yield server


def toml_value(value: Any) -> str:
    return json.dumps(value)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """A TOML file from nested dicts (tables, arrays of tables, plain values)."""
    lines: list[str] = []
    for section, values in data.items():
        if isinstance(values, list):
            for entry in values:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {toml_value(v)}" for k, v in entry.items())
            continue
        plain = {k: v for k, v in values.items() if not isinstance(v, list | dict)}
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in plain.items())
        for key, value in values.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                for entry in value:
                    lines.append(f"[[{section}.{key}]]")
                    lines.extend(f"{k} = {toml_value(v)}" for k, v in entry.items())
            elif isinstance(value, list):
                lines.insert(lines.index(f"[{section}]") + 1, f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def doctor(config: Path, *extra: str) -> tuple[int, str, dict[str, Any]]:
    """Run `mailtriage doctor` twice as a process: the human lines and --json."""
    base = [sys.executable, "-m", "mailtriage", "--config", str(config), "doctor"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRIAGE_IMAP_PASS")}
    env["COLUMNS"] = "200"
    human = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in human.stderr, human.stderr
    as_json = subprocess.run(
        [*base, "--json", *extra], capture_output=True, text=True, timeout=120, env=env
    )
    assert as_json.returncode == human.returncode, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is (human.returncode == 0)
    return human.returncode, human.stdout, report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def check(report: dict[str, Any], name: str) -> dict[str, str]:
    [found] = [c for c in report["checks"] if c["name"] == name]
    return found


def base_config(tmp_path: Path, database_url: str) -> dict[str, Any]:
    storage = tmp_path / "var"
    storage.mkdir(mode=0o700, exist_ok=True)
    return {
        "database": {"url": database_url},
        "storage": {"dir": str(storage)},
        "smtp": {"port": free_port()},
    }


@pytest.fixture
def base(tmp_path: Path) -> dict[str, Any]:
    """SQLite: the checks below do not depend on the database kind."""
    return base_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'mailtriage.db'}")


def migrate(tmp_path: Path, database_url: str) -> None:
    with App.from_settings(make_settings(tmp_path, database_url)) as app:
        app.prepare_database()


def test_good_setup_passes(tmp_path: Path, database_url: str, dovecot: Dovecot) -> None:
    base = base_config(tmp_path, database_url)
    migrate(tmp_path, database_url)
    secret = tmp_path / "secret"
    secret.write_text("s" * 32 + "\n")
    secret.chmod(0o600)
    base["security"] = {"secret_file": str(secret)}
    user = dovecot.add_user()
    with Relay() as relay:
        config = write_config(
            tmp_path / "good.toml",
            base
            | {
                "imap": {"enabled": True, "accounts": [dovecot.account(user)]},
                "outbound": relay.settings(),
            },
        )
        code, text, report = doctor(config)
    assert code == 0, text
    assert statuses(report) == {
        "config": "ok",
        "database": "ok",
        "migrations": "ok",
        "blobs": "ok",
        "disk": "ok",
        "secret": "ok",
        "smtp": "ok",
        "imap[0]": "ok",
        "relay": "ok",
        "templates": "ok",
        "timezone": "ok",
        "clock": "ok",
    }
    assert f"{user}" in check(report, "imap[0]")["detail"]
    assert "INBOX has 0 messages" in check(report, "imap[0]")["detail"]
    assert "Processed created at the first poll" in check(report, "imap[0]")["detail"]
    assert relay.received == []  # looked at, nothing sent
    lines = text.splitlines()
    assert len(lines) == len(report["checks"]) + 1 and lines[-1] == "all good"
    if database_url.startswith("postgresql"):
        assert "database within" in check(report, "clock")["detail"]


def test_broken_config_is_the_first_finding(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[smtp]\nport = 99999\n", encoding="utf-8")
    code, text, report = doctor(config)
    assert code == 1
    first = text.splitlines()[0]
    assert first.startswith("FAIL config")
    assert "smtp.port: expected an integer in 0..65535, got 99999" in first
    assert f"-> fix {config}" in first
    assert report["checks"][0]["status"] == "fail"

    config.write_text('[smtp]\nrecipients = ["support"]\n', encoding="utf-8")
    code, text, report = doctor(config)
    assert code == 1 and "smtp.recipients[0]: expected an address" in text


def test_wrong_imap_password_and_missing_folder(
    tmp_path: Path, base: dict[str, Any], dovecot: Dovecot
) -> None:
    user = dovecot.add_user()
    accounts = [
        dovecot.account(user, password="wrong"),
        dovecot.account(user, folder="Nowhere", processed_folder="Done"),
        dovecot.account(user, port=free_port()),
    ]
    config = write_config(
        tmp_path / "c.toml", base | {"imap": {"enabled": True, "accounts": accounts}}
    )
    code, text, report = doctor(config)
    assert code == 1
    wrong = check(report, "imap[0]")
    assert wrong["status"] == "fail" and "login failed" in wrong["detail"]
    assert "imap.accounts[0].password" in wrong["hint"]
    assert check(report, "imap[1]")["status"] == "fail"
    assert "folder 'Nowhere' does not exist" in check(report, "imap[1]")["detail"]
    assert "INBOX" in check(report, "imap[1]")["hint"]
    assert "cannot connect" in check(report, "imap[2]")["detail"]
    line = next(x for x in text.splitlines() if x.startswith("FAIL imap[0]"))
    assert "login failed" in line and "-> check imap.accounts[0].username" in line
    # the other checks still ran
    assert statuses(report)["templates"] == "ok"


def test_smtp_port_taken_by_mailtriage_or_by_another_program(
    tmp_path: Path, base: dict[str, Any]
) -> None:
    settings = make_settings(tmp_path, base["database"]["url"], smtp={"port": 0})
    with App.from_settings(settings) as app:
        app.prepare_database()
        listener = SmtpListener(app.inbox, settings)
        _, port = listener.start()
        try:
            config = write_config(tmp_path / "c.toml", base | {"smtp": {"port": port}})
            _code, _text, report = doctor(config)
        finally:
            listener.stop(1)
    assert check(report, "smtp")["status"] == "ok"
    assert "mailtriage is listening there already" in check(report, "smtp")["detail"]

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        config = write_config(tmp_path / "c.toml", base | {"smtp": {"port": port}})
        code, _text, report = doctor(config)
    assert code == 1
    assert check(report, "smtp")["status"] == "fail"
    assert "in use by another program" in check(report, "smtp")["detail"]


def test_relay_down_database_behind_and_storage_unwritable(
    tmp_path: Path, base: dict[str, Any]
) -> None:
    from mailtriage.store import db

    config = write_config(
        tmp_path / "c.toml", base | {"database": base["database"] | {"auto_migrate": False}}
    )
    code, _text, report = doctor(config)
    assert code == 1 and check(report, "database")["status"] == "fail"
    assert "does not exist yet" in check(report, "database")["detail"]
    assert not (tmp_path / "var" / "mailtriage.db").exists()  # the doctor made none

    engine = db.make_engine(base["database"]["url"])
    db.upgrade(engine, "0006")  # a database one migration behind
    engine.dispose()
    config = write_config(
        tmp_path / "c.toml",
        base
        | {
            "database": base["database"] | {"auto_migrate": False},
            "outbound": {"relay_host": "127.0.0.1", "relay_port": free_port()},
        },
    )
    code, _text, report = doctor(config)
    assert code == 1
    assert check(report, "relay")["status"] == "fail"
    assert "relay unreachable" in check(report, "relay")["detail"]
    migrations = check(report, "migrations")
    assert migrations["status"] == "fail" and "mailtriage db upgrade" in migrations["hint"]
    assert migrations["detail"].startswith("schema at 0006, code expects ")

    config = write_config(tmp_path / "c.toml", base)  # auto_migrate: applied at start
    code, _text, report = doctor(config)
    assert check(report, "migrations")["status"] == "warn"
    assert check(report, "relay")["status"] == "warn"  # no relay: the Maildir
    assert code == 0  # warnings are not failures
    assert _text.splitlines()[-1] == "no problems, 2 warnings"

    secret = tmp_path / "secret"
    secret.write_text("s" * 32 + "\n")
    secret.chmod(0o644)
    config = write_config(tmp_path / "c.toml", base | {"security": {"secret_file": str(secret)}})
    code, _text, report = doctor(config)
    assert code == 1 and check(report, "secret")["status"] == "fail"
    assert check(report, "secret")["hint"] == f"chmod 600 {secret}"
    secret.write_text("short\n")
    code, _text, report = doctor(config)
    assert code == 1 and "shorter than 16" in check(report, "secret")["detail"]

    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = write_config(tmp_path / "c.toml", base | {"storage": {"dir": str(blocker)}})
    code, _text, report = doctor(config)
    assert code == 1 and check(report, "blobs")["status"] == "fail"
    assert "cannot write" in check(report, "blobs")["detail"]


def test_unreachable_database(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml",
        {
            "database": {"url": "postgresql+psycopg://nobody@127.0.0.1:9/none"},
            "storage": {"dir": str(tmp_path / "var")},
            "smtp": {"port": free_port()},
        },
    )
    code, _text, report = doctor(config)
    assert code == 1
    database = check(report, "database")
    assert database["status"] == "fail" and "unreachable" in database["detail"]
    assert "database.url" in database["hint"]
