"""Every template renders in every language, strictly; HTML escapes; overrides win."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined

from mailtriage.outbound.render import RenderError, Templates

ROOT = Path(__file__).parent.parent
RULES = ROOT / "src" / "mailtriage" / "rules" / "default.toml"

FULL: dict[str, Any] = {
    "reference": "DM-000123",
    "name": "Erika Muster",
    "subject": "Drucker druckt nicht",
    "category": "account_access",
    "due": "Dienstag, 3. November 2026, 09:30 Uhr (MEZ)",
    "hours": "24",
    "business_hours": False,
    "articles": [
        {"title": "Passwort zurücksetzen", "url": "https://kb.example/a"},
        {"title": "Zwei-Faktor", "url": "https://kb.example/b"},
    ],
    "support_address": "support@dataandmore.com",
    "reply_address": "support+dm-000123@dataandmore.com",
    "ticket_url": "https://support.example/t/WzEsImEiLDFd.sig",
}
EMPTY = FULL | {"name": "", "subject": "", "category": "", "articles": [], "ticket_url": ""}

# The conversation kinds (outbound.conversation_mail): the variables each one gets.
COMMON = {
    "reference": "DM-000123",
    "name": "Anna Agent",
    "subject": "Schnittstelle <liefert> nichts",
    "support_address": "support@dataandmore.com",
    "reply_address": "support+dm-000123.abcdefghijklmnop@dataandmore.com",
    "ticket_url": "",
    "attachments": [
        {"filename": "fehler.png", "size": 1234, "attached": True},
        {"filename": "riesig.zip", "size": 99_000_000, "attached": False},
    ],
}
KIND_VALUES: dict[str, dict[str, Any]] = {
    "notice": COMMON
    | {
        "customer_name": "Erika Muster",
        "customer_address": "erika@kunde.example",
        "text": "Die Schnittstelle liefert seit heute <nichts>.",
        "level": "L2",
        "category": "integration",
        "priority": "high",
        "language": "de",
        "reasons": ["keyword 'Schnittstelle' -> integration"],
        "commands": ["#status", "#level", "#note"],
        "follow_up": False,
    },
    "reply": COMMON | {"agent_name": "Anna Agent", "text": "Bitte starten Sie <neu>."},
    "cmd_error": COMMON
    | {"errors": ["#stauts resolved: unknown command"], "commands": ["#status", "#note"]},
}
KIND_VALUES["ack"] = FULL
PORTAL_LINK = {"link": "https://x.example/o/tok", "minutes": "30", "support_address": "s@x.example"}
KIND_VALUES["portal_signin"] = PORTAL_LINK
KIND_VALUES["portal_link"] = PORTAL_LINK
KIND_VALUES["feedback"] = COMMON | {"ticket_url": "https://support.example/t/tok"}


@pytest.mark.parametrize("language", ["de", "en"])
def test_the_reply_to_a_customer_links_their_ticket_page(language: str) -> None:
    url = "https://support.example/t/WzEsImEiLDFd.sig"
    mail = TEMPLATES.render("reply", language, KIND_VALUES["reply"] | {"ticket_url": url})
    assert url in mail.text and f'href="{url}"' in mail.html
    bare = TEMPLATES.render("reply", language, KIND_VALUES["reply"])
    assert "/t/" not in bare.text and "/t/" not in bare.html


# The SLA kinds (outbound.sla_mail).
SLA_LABELS = {
    "level": "L1",
    "priority": "high",
    "category": "integration",
    "status": "open",
    "assignee": "",
}
KIND_VALUES |= {
    "sla_warning": COMMON
    | SLA_LABELS
    | {"clock": "first_response", "percent": 80, "due": "Montag, 9. November 2026, 08:59 Uhr"},
    "sla_breach": COMMON
    | SLA_LABELS
    | {"clock": "next_update", "due": "Montag, 9. November 2026, 08:59 Uhr (MEZ)"},
    "escalation": COMMON
    | SLA_LABELS
    | {
        "rule": "L1 not resolved after 2 business day(s) (policy default)",
        "elapsed_hours": 20.0,
        "customer_name": "Erika Muster",
        "customer_address": "erika@kunde.example",
        "conversation": [
            {
                "direction": "in",
                "internal": False,
                "who": "Erika Muster",
                "date": "2026-11-06T15:00+00:00",
                "text": "Die Schnittstelle <liefert> nichts.",
            },
            {
                "direction": "out",
                "internal": True,
                "who": "Anna Agent",
                "date": "2026-11-06T16:00+00:00",
                "text": "Kunde hat Version 3.",
            },
        ],
        "commands": ["#status", "#level"],
    },
    "escalation_note": COMMON,
    "reminder": COMMON | {"days": "3"},
    "auto_close": COMMON | {"days": "4"},
}


def variables_for(name: str) -> dict[str, Any]:
    """The variables of the kind a template file belongs to (``de/notice.txt``)."""
    kind = name.split("/")[-1].split(".")[0]
    return KIND_VALUES.get(kind, FULL)


TEMPLATES = Templates()
LANGUAGES = TEMPLATES.languages("ack")


def test_german_and_english_are_complete() -> None:
    assert {"de", "en"} <= set(LANGUAGES)


@pytest.mark.parametrize("variables", [FULL, EMPTY], ids=["full", "empty"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_ack_renders(language: str, variables: dict[str, Any]) -> None:
    assert TEMPLATES.env.undefined is StrictUndefined
    mail = TEMPLATES.render("ack", language, variables)
    assert "\n" not in mail.subject and "[DM-000123]" in mail.subject
    for part in (mail.text, mail.html):
        assert "DM-000123" in part
        assert variables["due"] in part
        assert "support@dataandmore.com" in part
        for article in variables["articles"]:
            assert article["url"] in part
    if variables["articles"]:
        assert "https://kb.example/b" in mail.text
    if variables["ticket_url"]:
        assert variables["ticket_url"] in mail.text and variables["ticket_url"] in mail.html
    if not variables["articles"] and not variables["ticket_url"]:
        assert "https://" not in mail.text
    assert mail.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'lang="{language}"' in mail.html
    if variables["category"]:
        # the category in plain words, not the classifier's name
        assert "account_access" not in mail.text and "account_access" not in mail.html


@pytest.mark.parametrize("name", [n for n in TEMPLATES.names() if not n.endswith(".md")])
def test_every_template_file_renders_with_strict_undefined(name: str) -> None:
    rendered = TEMPLATES.env.get_template(name).render(variables_for(name))
    assert rendered.strip() or name.startswith(("de/_", "en/_"))  # _labels: macros only


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("missing", sorted(FULL))
def test_a_missing_variable_fails_loudly(language: str, missing: str) -> None:
    variables = {k: v for k, v in FULL.items() if k != missing}
    if missing == "reply_address":
        # documented for custom templates; the shipped ones do not use it
        TEMPLATES.render("ack", language, variables)
        return
    with pytest.raises(RenderError, match=missing):
        TEMPLATES.render("ack", language, variables)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_category_has_plain_words(language: str) -> None:
    categories = set(tomllib.loads(RULES.read_text(encoding="utf-8"))["categories"])
    labels = TEMPLATES.env.get_template(f"{language}/_labels.j2").module.categories  # type: ignore[attr-defined]
    assert categories <= set(labels), f"{language}: no plain words for {categories - set(labels)}"
    mail = TEMPLATES.render("ack", language, FULL | {"category": "network"})
    assert labels["network"] in mail.text and labels["network"] in mail.html


@pytest.mark.parametrize("language", LANGUAGES)
def test_html_escapes_customer_text_and_plain_text_does_not(language: str) -> None:
    evil = 'Hilfe <script>alert("x")</script> & <b>'
    mail = TEMPLATES.render("ack", language, FULL | {"subject": evil, "name": "<i>Eve</i>"})
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "<i>Eve</i>" not in mail.html and "&lt;i&gt;Eve&lt;/i&gt;" in mail.html
    assert evil in mail.text
    assert "<script>" in mail.subject  # a header: text, not markup


def test_override_directory_wins_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "ack.subject.txt").write_text(
        "Eingang {{ reference }}: {{ subject }}\n", encoding="utf-8"
    )
    templates = Templates(tmp_path)
    mail = templates.render("ack", "de", FULL)
    assert mail.subject == "Eingang DM-000123: Drucker druckt nicht"
    assert "Guten Tag Erika Muster" in mail.text  # the shipped text part
    assert templates.render("ack", "en", FULL).subject.startswith("Re: [DM-000123]")
    # a language only the override directory has is used once it is complete
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "ack.txt").write_text("Bonjour {{ reference }}\n", encoding="utf-8")
    assert "fr" not in templates.languages("ack")
    (tmp_path / "fr" / "ack.html").write_text("<p>{{ reference }}</p>\n", encoding="utf-8")
    (tmp_path / "fr" / "ack.subject.txt").write_text("[{{ reference }}]\n", encoding="utf-8")
    assert "fr" in templates.languages("ack")


def test_a_broken_override_fails_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "ack.txt").write_text("{{ reference }\n", encoding="utf-8")
    with pytest.raises(RenderError, match=r"en/ack\.txt"):
        Templates(tmp_path).render("ack", "en", FULL)
    with pytest.raises(RenderError, match="not a directory"):
        Templates(tmp_path / "missing")


@pytest.mark.parametrize("kind", ["notice", "reply", "cmd_error"])
def test_conversation_kinds_exist_in_german_and_english(kind: str) -> None:
    assert {"de", "en"} <= set(TEMPLATES.languages(kind))


@pytest.mark.parametrize("language", ["de", "en"])
@pytest.mark.parametrize("kind", ["notice", "reply", "cmd_error"])
def test_conversation_kind_renders(kind: str, language: str) -> None:
    values = KIND_VALUES[kind]
    mail = TEMPLATES.render(kind, language, values)
    assert "\n" not in mail.subject and "[DM-000123]" in mail.subject
    assert f'lang="{language}"' in mail.html
    assert "<liefert>" not in mail.html and "&lt;liefert&gt;" in mail.html  # escaped
    if kind == "notice":
        assert mail.subject.startswith("[DM-000123] ") and "(L2, integration, high)" in mail.subject
        for part in (mail.text, mail.html):
            assert "Erika Muster" in part and "erika@kunde.example" in part
            assert "keyword 'Schnittstelle'" in part.replace("&#39;", "'")
            assert "fehler.png" in part and "#status" in part
        assert "Die Schnittstelle liefert seit heute <nichts>." in mail.text
    if kind == "reply":
        assert mail.subject == "Re: [DM-000123] Schnittstelle <liefert> nichts"
        assert mail.text.startswith("Bitte starten Sie <neu>.")
        assert "Anna Agent" in mail.text and "riesig.zip" in mail.text
    if kind == "cmd_error":
        assert "#stauts resolved: unknown command" in mail.text
        assert "#status" in mail.text


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        (kind, missing)
        for kind in ("notice", "reply", "cmd_error")
        for missing in ("reference", "text", "errors", "agent_name")
        if missing in KIND_VALUES[kind]  # only variables the kind has: no vacuous cases
    ],
)
def test_a_missing_conversation_variable_fails_loudly(kind: str, missing: str) -> None:
    values = KIND_VALUES[kind]
    with pytest.raises(RenderError, match=missing):
        TEMPLATES.render(kind, "en", {k: v for k, v in values.items() if k != missing})


SLA_KINDS = ["sla_warning", "sla_breach", "escalation", "escalation_note", "reminder", "auto_close"]


@pytest.mark.parametrize("language", ["de", "en"])
@pytest.mark.parametrize("kind", SLA_KINDS)
def test_sla_kinds_render_in_german_and_english(kind: str, language: str) -> None:
    assert {"de", "en"} <= set(TEMPLATES.languages(kind))
    mail = TEMPLATES.render(kind, language, KIND_VALUES[kind])
    assert "\n" not in mail.subject and "[DM-000123]" in mail.subject
    assert f'lang="{language}"' in mail.html
    assert "<liefert>" not in mail.html  # escaped where the customer's words appear
    if kind == "escalation":
        for part in (mail.text, mail.html):
            assert "20.0" in part and "policy default" in part and "fehler.png" in part
            assert "Kunde hat Version 3." in part
        assert "Die Schnittstelle <liefert> nichts." in mail.text
    if kind in ("sla_warning", "sla_breach"):
        assert "08:59" in mail.subject and "08:59" in mail.text
    if kind == "reminder":
        assert " 3 " in mail.text
