from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from mailtriage.cli import main
from mailtriage.config import ConfigError, Settings, load_settings, settings_from_dict

ROOT = Path(__file__).parent.parent


def test_defaults() -> None:
    settings = settings_from_dict({})
    assert settings.storage.dir == "var"
    assert settings.database_url == "sqlite:///var/mailtriage.db"
    assert settings.mail.support_address == "support@dataandmore.com"


def test_example_config_loads_and_documents_every_key() -> None:
    example = ROOT / "config.example.toml"
    settings = load_settings(example)
    assert settings.storage.dir == "var"
    data = tomllib.loads(example.read_text(encoding="utf-8"))
    for section in dataclasses.fields(Settings):
        if section.name == "source":
            continue
        assert section.name in data, f"[{section.name}] missing from config.example.toml"
        documented = set(data[section.name])
        keys = {f.name for f in dataclasses.fields(getattr(settings, section.name))}
        assert keys == documented, f"[{section.name}] keys differ: {keys ^ documented}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"storage": {"max_message_mb": "big"}},
            'storage.max_message_mb: expected a number, got "big"',
        ),
        ({"storage": {"dirr": "x"}}, "storage.dirr: unknown key"),
        ({"nosuch": {}}, "nosuch: unknown key"),
        ({"worker": {"batch_size": 1.5}}, "worker.batch_size: expected an integer, got 1.5"),
        ({"worker": {"enabled": "yes"}}, 'worker.enabled: expected true or false, got "yes"'),
        (
            {"mail": {"own_domains": "x.example"}},
            'mail.own_domains: expected a list, got "x.example"',
        ),
        ({"mail": {"own_domains": [1]}}, "mail.own_domains[0]: expected a string, got 1"),
        ({"database": "sqlite://"}, 'database: expected a table, got "sqlite://"'),
    ],
)
def test_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data)
    assert str(err.value).startswith(message)


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[storage]\ndir = "from-file"\n', encoding="utf-8")
    monkeypatch.setenv("MAILTRIAGE_CONFIG", str(config))
    assert load_settings().storage.dir == "from-file"
    monkeypatch.setenv("MAILTRIAGE_STORAGE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("MAILTRIAGE_DATABASE_URL", "sqlite:///elsewhere.db")
    settings = load_settings()
    assert settings.storage.dir == str(tmp_path / "env")
    assert settings.database_url == "sqlite:///elsewhere.db"


def test_bad_config_is_one_line_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[storage]\nmax_message_mb = "big"\n', encoding="utf-8")
    assert main(["--config", str(config), "tickets", "list"]) == 2
    err = capsys.readouterr().err
    assert err == 'mailtriage: error: storage.max_message_mb: expected a number, got "big"\n'

    config.write_text("[storage\n", encoding="utf-8")
    assert main(["--config", str(config), "tickets", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mailtriage: error: ") and "invalid TOML" in err
    assert err.count("\n") == 1

    assert main(["--config", str(tmp_path / "missing.toml"), "tickets", "list"]) == 2
    assert "config file not found" in capsys.readouterr().err
