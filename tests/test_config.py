from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mailtriage.cli import main
from mailtriage.config import ConfigError, Settings, load_settings, settings_from_dict

ROOT = Path(__file__).parent.parent
AGENT = {"address": "anna@dataandmore.com", "name": "Anna Schmidt", "level": "L2"}


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
        value = getattr(settings, section.name)
        if isinstance(value, tuple):  # an array of tables ([[agents]]): its first entry
            assert value, f"[[{section.name}]] has no example entry"
            value, documented = value[0], set(data[section.name][0])
        else:
            documented = set(data[section.name])
        keys = {f.name for f in dataclasses.fields(value)}
        assert keys == documented, f"[{section.name}] keys differ: {keys ^ documented}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"storage": {"max_message_mb": "big"}},
            'storage.max_message_mb: expected a number, got "big"',
        ),
        ({"storage": {"dirr": "x"}}, "storage.dirr: unknown key"),
        (
            {"portal": {"organisations": [{"domain": "gmail.com", "addresses": ["a@gmail.com"]}]}},
            "portal.organisations[0].domain: gmail.com is a freemail domain",
        ),
        (
            {"portal": {"organisations": [{"domain": "Kunde", "addresses": ["a@kunde.de"]}]}},
            'portal.organisations[0].domain: expected a lower-case mail domain, got "Kunde"',
        ),
        ({"portal": {"link_days": 0}}, "portal.link_days: expected a number > 0"),
        ({"portal": {"base_url": "ftp://x"}}, "portal.base_url: expected http(s)://host"),
        ({"nosuch": {}}, "nosuch: unknown key"),
        ({"worker": {"batch_size": 1.5}}, "worker.batch_size: expected an integer, got 1.5"),
        ({"worker": {"enabled": "yes"}}, 'worker.enabled: expected true or false, got "yes"'),
        (
            {"mail": {"own_domains": "x.example"}},
            'mail.own_domains: expected a list, got "x.example"',
        ),
        ({"mail": {"own_domains": [1]}}, "mail.own_domains[0]: expected a string, got 1"),
        ({"database": "sqlite://"}, 'database: expected a table, got "sqlite://"'),
        ({"agents": {"address": "a@b.de"}}, "agents: expected a list, got a table"),
        (
            {"agents": [AGENT, {**AGENT, "address": "bo@dataandmore.com", "level": "L4"}]},
            'agents[1].level: expected one of "L1", "L2", "L3", got "L4"',
        ),
        ({"agents": [{**AGENT, "level": 2}]}, 'agents[0].level: expected one of "L1"'),
        ({"agents": [{**AGENT, "address": "anna"}]}, "agents[0].address: expected an address"),
        ({"agents": [{**AGENT, "address": ""}]}, "agents[0].address: expected an address"),
        (
            {"agents": [{**AGENT, "address": "Anna <anna@dataandmore.com>"}]},
            "agents[0].address: expected an address",
        ),
        ({"agents": [{**AGENT, "address": "anna@localhost"}]}, "agents[0].address: expected"),
        ({"agents": [{**AGENT, "address": 7}]}, "agents[0].address: expected a string, got 7"),
        ({"agents": [{"address": "anna@dataandmore.com"}]}, "agents[0].name: required"),
        ({"agents": [{**AGENT, "email": "x"}]}, "agents[0].email: unknown key"),
        (
            {"agents": [AGENT, {**AGENT, "address": "ANNA@dataandmore.com"}]},
            "agents[1].address: ANNA@dataandmore.com is agents[0] already",
        ),
        (
            {"agents": [{**AGENT, "address": "support+anna@dataandmore.com"}]},
            "agents[0].address: is mail.support_address",
        ),
        (
            {"security": {"secret": "x" * 20, "secret_file": "/run/secret"}},
            "security.secret: set either secret or secret_file, not both",
        ),
        ({"security": {"secret": "short"}}, "security.secret: at least 16 characters"),
        ({"security": {"secret": 12345678901234567}}, "security.secret: expected a string"),
        (
            {"security": {"trust_agents_by_address": "yes"}},
            'security.trust_agents_by_address: expected true or false, got "yes"',
        ),
        (
            {"security": {"authserv_ids": "mx.dataandmore.com"}},
            'security.authserv_ids: expected a list, got "mx.dataandmore.com"',
        ),
        (
            {"security": {"authserv_ids": ["mx.dataandmore.com", "mx two"]}},
            'security.authserv_ids[1]: not an authserv-id: "mx two"',
        ),
        ({"security": {"authserv_ids": [""]}}, "security.authserv_ids[0]: not an authserv-id"),
        (
            {"conversation": {"reopen_days": -1}},
            "conversation.reopen_days: expected a number >= 0, got -1.0",
        ),
        (
            {"conversation": {"reopen_days": "14"}},
            'conversation.reopen_days: expected a number, got "14"',
        ),
        (
            {"conversation": {"organisation_participants": 1}},
            "conversation.organisation_participants: expected true or false, got 1",
        ),
        # Ranges, enums and ports, declared next to the fields (config.Range/Choice).
        ({"smtp": {"port": 65536}}, "smtp.port: expected an integer in 0..65535, got 65536"),
        ({"smtp": {"port": -1}}, "smtp.port: expected an integer in 0..65535, got -1"),
        ({"outbound": {"relay_port": 70000}}, "outbound.relay_port: expected an integer in 0.."),
        (
            {"imap": {"accounts": [{"host": "h", "port": 100000}]}},
            "imap.accounts[0].port: expected an integer in 0..65535, got 100000",
        ),
        ({"worker": {"batch_size": 0}}, "worker.batch_size: expected an integer >= 1, got 0"),
        ({"worker": {"lease_seconds": 0}}, "worker.lease_seconds: expected a number > 0, got 0.0"),
        ({"smtp": {"max_connections": 0}}, "smtp.max_connections: expected an integer >= 1"),
        ({"smtp": {"timeout_seconds": -5}}, "smtp.timeout_seconds: expected a number > 0"),
        ({"storage": {"max_message_mb": 0}}, "storage.max_message_mb: expected a number > 0"),
        ({"service": {"worker_nice": 20}}, "service.worker_nice: expected an integer in 0..19"),
        ({"sla": {"response_hours": 0}}, "sla.response_hours: expected a number > 0, got 0.0"),
        ({"kb": {"max_articles": -1}}, "kb.max_articles: expected an integer >= 0, got -1"),
        (
            {"imap": {"reconnect_initial_seconds": 0}},
            "imap.reconnect_initial_seconds: expected a number > 0",
        ),
        (
            {"imap": {"reconnect_initial_seconds": 600}},
            "imap.reconnect_initial_seconds: 600 is more than reconnect_max_seconds (300)",
        ),
        (
            {"outbound": {"retry_base_seconds": 4000}},
            "outbound.retry_base_seconds: 4000 is more than retry_max_seconds (1800)",
        ),
        ({"logging": {"level": "verbose"}}, 'logging.level: expected one of "DEBUG", "INFO"'),
        ({"logging": {"level": 10}}, "logging.level: expected a string, got 10"),
        ({"sla": {"timezone": "Mars/Olympus"}}, 'sla.timezone: unknown time zone "Mars/Olympus"'),
        ({"sla": {"timezone": "../etc"}}, "sla.timezone: not a time zone name like"),
        ({"mail": {"support_address": "support"}}, "mail.support_address: expected an address"),
        ({"mail": {"ticket_prefix": "D-M"}}, "mail.ticket_prefix: expected 1-10 letters"),
        (
            {"mail": {"own_domains": ["ok.example", "@bad.example"]}},
            'mail.own_domains[1]: expected a domain like mailtriage.example.com, got "@bad',
        ),
        (
            {"outbound": {"envelope_sender": "bounces"}},
            "outbound.envelope_sender: expected an address like bounces@example.com (or empty), "
            'got "bounces"',
        ),
        ({"outbound": {"relay_host": "mx .example"}}, "outbound.relay_host: expected a host"),
        ({"triage": {"default_language": "EN"}}, 'triage.default_language: expected one of "de"'),
        (
            {"conversation": {"new_tickets_window_minutes": 0}},
            "conversation.new_tickets_window_minutes: expected a number > 0, got 0.0",
        ),
        # SLA numbers: declared ranges like every other section (one per kind).
        (
            {"sla": {"next_update_hours": -1}},
            "sla.next_update_hours: expected a number >= 0, got -1.0",
        ),
        ({"sla": {"reminder_days": -0.5}}, "sla.reminder_days: expected a number >= 0, got -0.5"),
        (
            {"sla": {"escalate_after_days": -1}},
            "sla.escalate_after_days: expected an integer >= 0, got -1",
        ),
        (
            {"sla": {"escalate_after_days": 1.5}},
            "sla.escalate_after_days: expected an integer, got 1.5",
        ),
        (
            {"sla": {"job_interval_seconds": 0}},
            "sla.job_interval_seconds: expected a number > 0, got 0.0",
        ),
        ({"sla": {"batch_size": 0}}, "sla.batch_size: expected an integer >= 1, got 0"),
        (
            {"sla": {"policies": [{"name": "x", "solution_hours": -2}]}},
            "sla.policies[0].solution_hours: expected a number >= 0, got -2.0",
        ),
        (
            {"sla": {"policies": [{"name": "x", "escalate_after_days": -1}]}},
            "sla.policies[0].escalate_after_days: expected an integer >= 0, got -1",
        ),
    ],
)
def test_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data)
    assert str(err.value).startswith(message)


def test_conversation_defaults_and_agents() -> None:
    settings = settings_from_dict({})
    assert settings.agents == ()
    assert settings.security.trust_agents_by_address is False
    assert settings.security.authserv_ids == ()
    assert settings.security.secret == settings.security.secret_file == ""
    assert settings.conversation.reopen_days == 14.0
    assert settings.conversation.organisation_participants is False
    settings = settings_from_dict(
        {
            "agents": [AGENT, {"address": "bo@dataandmore.com", "name": "Bo", "level": "L3"}],
            "security": {"authserv_ids": ["mx.dataandmore.com"], "secret": "s" * 16},
            "conversation": {"reopen_days": 0},
        }
    )
    assert [(a.address, a.name, a.level) for a in settings.agents] == [
        ("anna@dataandmore.com", "Anna Schmidt", "L2"),
        ("bo@dataandmore.com", "Bo", "L3"),
    ]
    assert settings.security.authserv_ids == ("mx.dataandmore.com",)
    assert settings.conversation.reopen_days == 0.0


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


def test_zero_means_default_or_any_where_documented() -> None:
    settings = settings_from_dict(
        {
            "smtp": {"port": 0},
            "worker": {"processes": 0, "retry_base_seconds": 0},
            "outbound": {"relay_port": 0},
            "service": {"shutdown_grace_seconds": 0, "worker_nice": 0},
            "logging": {"level": "debug"},  # the level is read case-insensitively
            "kb": {"max_articles": 0},
        }
    )
    assert settings.smtp.port == 0 and settings.worker.processes == 0
    assert settings.logging.level == "debug"


# The findings of issue 13: each ended in a traceback or was accepted silently.
@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[logging]\nlevel = "LOUD"\n',
            'logging.level: expected one of "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", '
            'got "LOUD"',
        ),
        ("[smtp]\nport = 99999\n", "smtp.port: expected an integer in 0..65535, got 99999"),
        ("[worker]\nprocesses = -3\n", "worker.processes: expected an integer >= 0, got -3"),
        (
            "[outbound]\nticket_limit = -1\n",
            "outbound.ticket_limit: expected an integer >= 1, got -1",
        ),
        (
            '[triage]\ndefault_language = "fr"\n',
            'triage.default_language: expected one of "de", "en", got "fr"',
        ),
    ],
)
def test_findings_are_one_line_through_the_command(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[storage]\ndir = "{tmp_path / "var"}"\n{toml}', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mailtriage", "--config", str(config), "tickets", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == f"mailtriage: error: {message}\n"
    assert result.stdout == ""
    assert not (tmp_path / "var").exists()  # refused before anything was touched


def test_every_sla_number_declares_its_range() -> None:
    """The SLA sections check numbers the way every other section does: a Range on
    the field, read by the loader (no range checked by hand in problems())."""
    import types
    import typing

    from mailtriage.config import Range, SlaPolicySettings, SlaSettings

    checked = []
    for cls in (SlaSettings, SlaPolicySettings):
        for name, hint in typing.get_type_hints(cls, include_extras=True).items():
            if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
                hint = next(a for a in typing.get_args(hint) if a is not type(None))
            annotated = typing.get_origin(hint) is typing.Annotated
            base, *extras = typing.get_args(hint) if annotated else (hint,)
            if base in (int, float):
                checked.append(f"{cls.__name__}.{name}")
                assert any(isinstance(e, Range) for e in extras), f"{checked[-1]}: no Range"
    assert "SlaPolicySettings.escalate_after_days" in checked and len(checked) >= 14
