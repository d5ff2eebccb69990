"""ops/logs.py: one line per event, JSON or text, with the structured fields."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from mailtriage.config import LoggingSettings
from mailtriage.ops.logs import JsonFormatter, TextFormatter, fields, wants_json


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("mailtriage.x", logging.INFO, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_fields_and_stay_one_line() -> None:
    extra = fields(inbound_id=7, ticket="DM-000042", message_id="a@b", reason="")
    line = JsonFormatter().format(record("two\nlines", **extra))
    assert "\n" not in line
    data = json.loads(line)
    assert data["msg"] == "two\nlines" and data["level"] == "info"
    assert (data["inbound_id"], data["ticket"], data["message_id"]) == (7, "DM-000042", "a@b")
    assert "reason" not in data  # empty fields are left out
    assert data["ts"].endswith("Z")


def test_text_lines_append_the_fields_readably() -> None:
    line = TextFormatter().format(
        record("inbound 7 created", **fields(inbound_id=7, ticket="DM-1"))
    )
    assert line.endswith("inbound 7 created [inbound_id=7 ticket=DM-1]")
    assert TextFormatter().format(record("plain")).endswith("mailtriage.x: plain")


def test_an_unknown_field_is_a_mistake_not_a_silent_loss() -> None:
    with pytest.raises(ValueError, match="unknown log field"):
        fields(inbound=7)


def test_format_auto_is_json_unless_stderr_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not wants_json(LoggingSettings())
    assert wants_json(LoggingSettings(format="json"))
    assert wants_json(LoggingSettings(json=True))
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert wants_json(LoggingSettings(format="auto"))
    monkeypatch.setattr(sys, "stderr", Tty())
    assert not wants_json(LoggingSettings(format="auto"))
