"""Jinja2 templates of the mail we send.

Layout: ``<language>/<kind>.subject.txt``, ``<language>/<kind>.txt`` and
``<language>/<kind>.html`` (e.g. ``de/ack.html``), plus ``<language>/_labels.j2`` with
words the templates share. A directory named in ``outbound.templates_dir`` is searched
first, so any single file can be overridden. ``StrictUndefined``: a template that uses
a variable nobody passes fails loudly (the outbox row fails with the reason) instead of
sending a mail with a hole in it. HTML templates autoescape, so a customer's subject
like ``<script>`` is shown, not run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailtriage.outbound.headers import clean_header_value

if TYPE_CHECKING:
    from jinja2 import Environment

__all__ = ["RenderError", "Rendered", "Templates", "default_templates_dir"]

ENV_TEMPLATES_DIR = "MAILTRIAGE_TEMPLATES_DIR"


class RenderError(Exception):
    """A template is missing or broken (permanent for this mail until fixed)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def default_templates_dir() -> Path:
    """The shipped templates: $MAILTRIAGE_TEMPLATES_DIR, the source tree, or ./templates."""
    candidates = []
    if os.environ.get(ENV_TEMPLATES_DIR):
        candidates.append(Path(os.environ[ENV_TEMPLATES_DIR]))
    candidates.append(Path(__file__).resolve().parents[3] / "templates")
    candidates.append(Path.cwd() / "templates")
    for candidate in candidates:
        if (candidate / "en").is_dir():
            return candidate
    raise RenderError(
        f"templates directory not found (looked in {', '.join(map(str, candidates))}); "
        f"set {ENV_TEMPLATES_DIR} or outbound.templates_dir"
    )


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith(".html")


class Templates:
    """The template set: an override directory (optional) over the shipped one."""

    def __init__(self, override_dir: str | Path | None = None) -> None:
        dirs: list[Path] = []
        if override_dir:
            path = Path(override_dir)
            if not path.is_dir():
                raise RenderError(f"outbound.templates_dir: not a directory: {path}")
            dirs.append(path)
        dirs.append(default_templates_dir())
        self.dirs = tuple(dirs)

    @cached_property
    def env(self) -> Environment:
        """Made on first use: the worker only asks which languages exist (queueing a
        mail renders nothing), and importing Jinja2 is part of every start-up."""
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        return Environment(
            loader=FileSystemLoader([str(d) for d in self.dirs]),
            undefined=StrictUndefined,
            autoescape=_autoescape,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def languages(self, kind: str = "ack") -> tuple[str, ...]:
        """Languages that have every part of ``kind`` (in any of the directories)."""
        found: set[str] = set()
        for base in self.dirs:
            for lang_dir in base.iterdir():
                if lang_dir.is_dir() and not lang_dir.name.startswith(("_", ".")):
                    found.add(lang_dir.name)
        return tuple(sorted(lang for lang in found if self.has(kind, lang)))

    def has(self, kind: str, language: str) -> bool:
        return all(
            any((d / language / f"{kind}{suffix}").is_file() for d in self.dirs)
            for suffix in (".subject.txt", ".txt", ".html")
        )

    def names(self) -> list[str]:
        """Every mail template file (for the test that renders all of them); the web
        pages in ``portal/`` are not mail."""
        return sorted(n for n in self.env.list_templates() if not n.startswith("portal/"))

    def render(self, kind: str, language: str, variables: Mapping[str, Any]) -> Rendered:
        """Subject (one clean line), plain text and HTML of one mail."""
        from jinja2 import TemplateError

        try:
            subject = self.env.get_template(f"{language}/{kind}.subject.txt").render(variables)
            text = self.env.get_template(f"{language}/{kind}.txt").render(variables)
            html = self.env.get_template(f"{language}/{kind}.html").render(variables)
        except TemplateError as exc:
            where = getattr(exc, "name", None) or f"{language}/{kind}"
            raise RenderError(f"template {where}: {type(exc).__name__}: {exc}") from exc
        return Rendered(clean_header_value(subject, 900), text.strip() + "\n", html)
