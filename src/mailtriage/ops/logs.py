"""Logging setup: readable lines on a terminal, one JSON object per line for collectors.

One line per event. What a line is about goes in structured fields, not only in the
text: ``log.info("...", extra=fields(inbound_id=5, ticket="DM-000001",
message_id="<x@y>"))``. JSON lines carry them as keys; text lines append them as
``key=value``. Customer addresses, subjects and bodies are not logged at INFO (they
are in the database, where access is controlled and purged); ids are enough to find them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from mailtriage.config import LoggingSettings

# The structured fields a record may carry (``extra=``), in the order they are shown.
FIELDS = ("inbound_id", "ticket", "message_id", "outcome", "reason", "outbox_id", "account")


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the known fields that have a value."""
    unknown = set(values) - set(FIELDS)
    if unknown:  # a typo would silently vanish from every line
        raise ValueError(f"unknown log field(s): {', '.join(sorted(unknown))}")
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) not in (None, "")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        data.update(_record_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        # One line whatever the message holds: json.dumps escapes newlines.
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = _record_fields(record)
        if not extra:
            return line
        shown = " ".join(f"{k}={v}" for k, v in extra.items())
        head, sep, rest = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{shown}]{sep}{rest}"


def wants_json(settings: LoggingSettings) -> bool:
    """``logging.format`` (or the older ``logging.json``) decided for this process."""
    if settings.json or settings.format == "json":
        return True
    if settings.format == "auto":
        return not sys.stderr.isatty()
    return False


def setup_logging(level: str, as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (mail-parser logs every defect at WARNING/ERROR) is not ours.
    for noisy in ("mailparser", "alembic"):
        logging.getLogger(noisy).setLevel(logging.ERROR if level.upper() != "DEBUG" else "DEBUG")
