"""Guideline behaviour of the rule classifier, on messages written for these tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailtriage.pipeline.classify import (
    Classification,
    ClassifierInput,
    RulesError,
    classify,
    input_from_text,
)
from mailtriage.triage.rules_file import load_rules


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def run(rules, subject: str, body: str, attachments=(), sender: str = "") -> Classification:
    return classify(input_from_text(subject, body, attachments, sender), rules)


# (id, subject, body, expected {label: value})
CASES = [
    (
        "pw_reset_de",
        "Passwort vergessen",
        "Hallo,\n\nich habe mein Passwort vergessen und der Link zum Zurücksetzen kommt nicht an. "
        "Können Sie mir bitte helfen?\n\nDanke\nPetra Lang",
        {"category": "account_access", "level": "L1", "language": "de"},
    ),
    (
        "locked_en",
        "Account locked",
        "Hi,\n\nafter three wrong attempts my account is locked. Could you unlock it? "
        "A colleague covers my tasks meanwhile.\n\nThanks\nTom",
        {"category": "account_access", "level": "L1", "priority": "normal", "language": "en"},
    ),
    (
        "helpdesk_tried_de",
        "Anmeldung nicht möglich",
        "Guten Tag,\n\neine Kollegin kann sich seit heute nicht mehr anmelden. Unser Helpdesk hat "
        "bereits das Passwort zurückgesetzt und den Browser-Cache geleert – ohne Erfolg. Es kommt "
        'weiterhin "Anmeldung fehlgeschlagen".\n\nMit freundlichen Grüßen\nIT-Service',
        {"category": "account_access", "level": "L2"},
    ),
    (
        "helpdesk_tried_en",
        "Client install keeps failing",
        "Hello,\n\nthe desktop client installer stops at 80% on a new laptop. Our service desk has "
        "already tried a reinstall as administrator and cleared the temp folder, without "
        "success.\n\n"
        "Regards,\nJoe",
        {"category": "installation", "level": "L2"},
    ),
    (
        "howto_en_low",
        "Exporting search results",
        "Hi,\n\nhow can I export my search results to Excel? I couldn't spot the "
        "option.\n\nCheers,\nAnn",
        {"category": "how_to", "level": "L1", "priority": "low"},
    ),
    (
        "howto_de",
        "Dokumente an Kollegen freigeben",
        "Hallo,\n\nwie kann ich einen Ordner für eine Kollegin aus der Buchhaltung freigeben? "
        "Ich finde im Menü keinen passenden Punkt.\n\nGruß\nMia",
        {"category": "how_to", "level": "L1"},
    ),
    (
        "network_simple_question_L1",
        "Frage zu Ports",
        "Hallo,\n\nkurze Frage: welche Ports und Hostnamen müssen wir in der Firewall für die "
        "Plattform freigeben?\n\nDanke\nNetzwerkteam",
        {"category": "network", "level": "L1"},
    ),
    (
        "network_problem_L2",
        "VPN users cannot connect",
        "Hello,\n\nsince our firewall update yesterday, staff working over VPN get a certificate "
        "error when they open the platform. Office users are fine.\n\nBest regards,\nNet Ops",
        {"category": "network", "level": "L2"},
    ),
    (
        "integration_saml",
        "SAML login fails after IdP change",
        "Hi,\n\nwe moved our identity provider to a new tenant and since then the SSO login ends "
        'with "SAML assertion invalid". We uploaded the new metadata XML.\n\nThanks,\nIT',
        {"category": "integration", "level": "L2"},
    ),
    (
        "integration_api_de",
        "REST-API liefert 401",
        "Hallo,\n\nunsere Schnittstelle zum ERP bekommt seit dem Token-Wechsel nur noch 401 von "
        "der API. Der neue Token ist im Connector hinterlegt.\n\nGruß\nAnwendungsbetreuung",
        {"category": "integration", "level": "L2"},
    ),
    (
        "data_missing_de",
        "Dokumente verschwunden",
        "Hallo,\n\nin unserem Ordner Verträge fehlen seit gestern rund 40 Dokumente, sie sind "
        "auch nicht im Papierkorb. Bitte um Wiederherstellung.\n\nGruß\nVertragsmanagement",
        {"category": "data_issue", "level": "L2"},
    ),
    (
        "data_duplicates_en",
        "Duplicate invoices after import",
        "Hi,\n\nafter last week's migration every supplier invoice from 2023 appears twice, with "
        "identical metadata. Can you remove the duplicates?\n\nKind regards,\nFinance",
        {"category": "data_issue", "level": "L2"},
    ),
    (
        "severe_error_en_urgent",
        "Nobody can open documents",
        "Hi,\n\nsince 8am nobody in our company can open any document: every click gives "
        '"500 Internal Server Error". All 300 users are affected and our operations have '
        "stopped.\n\nPlease call me.\nIT Manager",
        {"category": "severe_error", "level": "L2", "priority": "urgent"},
    ),
    (
        "severe_error_de_team_high",
        "Berichte laufen in Timeout",
        "Hallo,\n\nseit gestern bricht jeder Bericht im Controlling nach zwei Minuten mit "
        "Zeitüberschreitung ab. Das ganze Team ist blockiert und der Monatsabschluss ist "
        "am Freitag.\n\n"
        "Viele Grüße\nControlling",
        {"category": "severe_error", "level": "L2", "priority": "high"},
    ),
    (
        "dringend_alone_not_urgent",
        "DRINGEND: Spaltenüberschrift falsch geschrieben",
        'Hallo,\n\ndringend!!! In der Trefferliste steht "Dokumnet" statt "Dokument" in der '
        "Spaltenüberschrift. Rein optisch, alles funktioniert.\n\nGruß\nKarl",
        {"category": "minor_bug", "level": "L1", "priority": "low"},
    ),
    (
        "asap_alone_not_urgent",
        "ASAP - icon misaligned",
        "Hi,\n\nplease fix ASAP: the download icon in the toolbar is slightly misaligned. "
        "Purely cosmetic, everything works.\n\nThanks\nLiz",
        {"category": "minor_bug", "priority": "low"},
    ),
    (
        "minor_bug_workaround_normal",
        "Sortierung nach Datum stimmt nicht",
        "Hallo,\n\ndie Sortierung nach Belegdatum in der Trefferliste ist falsch, 2024 "
        "kommt vor 2023. "
        "Als Workaround filtere ich nach Jahr, das geht.\n\nGruß\nEva",
        {"category": "minor_bug", "level": "L1", "priority": "normal"},
    ),
    (
        "code_defect_en",
        "Regression in 7.2: PDF export fails with exception",
        "Hello,\n\nsince the update to release 7.2 the PDF export fails for every document with "
        "more than 100 pages. Steps to reproduce: open any long document, click Export > PDF. "
        "The log shows a NullPointerException. It worked before the release.\n\nRegards,\nQA",
        {"category": "code_defect", "level": "L3"},
    ),
    (
        "infrastructure_de",
        "Speicherplatz erhöhen",
        "Guten Tag,\n\nunser Speicherkontingent ist zu 95 % ausgeschöpft. Bitte erhöhen Sie die "
        "Kapazität unseres Mandanten um 1 TB, wir importieren im nächsten Quartal ein "
        "Altarchiv.\n\n"
        "Mit freundlichen Grüßen\nIT-Leitung",
        {"category": "infrastructure", "level": "L3"},
    ),
    (
        "custom_dev_wish_low",
        "Idee: Export als JSON",
        "Hallo,\n\nein Wunsch für eine der nächsten Versionen: ein Export der Metadaten "
        "als JSON wäre "
        "schön. Kein Zeitdruck.\n\nViele Grüße\nJan",
        {"category": "custom_development", "level": "L3", "priority": "low"},
    ),
    (
        "custom_dev_budget_normal",
        "Development request: custom approval step",
        "Hi,\n\ncould you build a custom approval step for us that checks our ERP before a "
        "deletion? "
        "The standard product does not support this. We need an estimate for our budget round "
        "next month.\n\nBest regards,\nHead of IT",
        {"category": "custom_development", "level": "L3", "priority": "normal"},
    ),
    (
        "compliance_de",
        "Welche Aufbewahrungsfrist gilt für Lieferscheine?",
        "Hallo,\n\nin unserem Regelwerk finde ich zwei Regeln für Lieferscheine. Welche "
        "Aufbewahrungsfrist gilt denn nun?\n\nGruß\nBuchhaltung",
        {"category": "compliance", "level": "L1"},
    ),
    (
        "compliance_advice_L2",
        "Retention for board minutes - your recommendation?",
        "Hello,\n\nwe are unsure how long to keep board minutes. What would you recommend, and is "
        "there a best practice among your customers?\n\nKind regards,\nCompany Secretary",
        {"category": "compliance", "level": "L2"},
    ),
    (
        "privacy_de",
        "Auskunftsersuchen nach DSGVO",
        "Hallo,\n\nein Kunde verlangt Auskunft über seine personenbezogenen Daten nach "
        "Art. 15 DSGVO. "
        "Wie finden wir alle Dokumente zu ihm?\n\nGruß\nDatenschutz",
        {"category": "privacy", "level": "L1"},
    ),
    (
        "privacy_en",
        "May we store ID copies?",
        "Hi,\n\nare we allowed to keep copies of passports of our tenants in the archive under our "
        "data protection policy?\n\nThanks\nOffice",
        {"category": "privacy", "level": "L1"},
    ),
    (
        "security_incident_urgent",
        "Unknown login on my account",
        "Hello,\n\nI got an alert that someone signed in to my account from an unknown country an "
        "hour ago. That was definitely not me and I can no longer change my password. My account "
        "can see all client files.\n\nPlease lock it now.\nMark",
        {"priority": "urgent"},
    ),
    (
        "data_loss_urgent",
        "Dateien werden gerade gelöscht",
        "Hilfe, seit einer Viertelstunde werden in unserem Projektordner laufend Dateien gelöscht, "
        "es werden immer mehr. Bitte sofort melden!\n\nGruß\nIT",
        {"category": "data_issue", "priority": "urgent"},
    ),
    (
        "thanks_other",
        "AW: [Ticket 4711] Export",
        "Hallo Frau Berg,\n\nvielen Dank für die schnelle Hilfe, es funktioniert jetzt wieder. Das "
        "Ticket kann geschlossen werden.\n\nGrüße\nTim\n\n"
        "Am 02.03.2026 um 10:00 schrieb Support <support@example.com>:\n"
        "> bitte probieren Sie den Export erneut.",
        {"category": "other", "level": "L1", "priority": "low"},
    ),
    (
        "sales_other",
        "Pricing for additional licences",
        "Hello,\n\ncould you send us a quote for 10 more user licences?\n\nThanks,\nPurchasing",
        {"category": "other", "level": "L1"},
    ),
    (
        "config_L2",
        "Freigabe-Workflow für Rechnungen einrichten",
        "Hallo,\n\nwir möchten einen zweistufigen Freigabe-Workflow einrichten: Rechnungen über "
        "10.000 € sollen automatisch an die Geschäftsführung gehen, alle anderen an die "
        "Abteilungsleitung. Lässt sich das mit den vorhandenen Regeln abbilden?\n\nGruß\nOrga",
        {"category": "configuration", "level": "L2"},
    ),
]


# Cases the packaged model (rules + words) still gets wrong; strict: a fix shows up.
KNOWN_MODEL_MISSES: dict[str, str] = {}


def _case(case: tuple) -> object:
    reason = KNOWN_MODEL_MISSES.get(case[0])
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(*case, id=case[0], marks=marks)


@pytest.mark.parametrize(("case_id", "subject", "body", "expected"), [_case(c) for c in CASES])
def test_guideline_cases(rules, case_id, subject, body, expected):
    result = run(rules, subject, body)
    got = {k: getattr(result, k) for k in expected}
    assert got == expected, f"{case_id}: {result.reasons}"


def test_quoted_text_does_not_decide_language(rules):
    body = (
        "Hi,\n\nthanks, but the export still fails with the same error on my "
        "side.\n\nBest,\nAnna\n\n"
        "Am 03.02.2026 um 09:12 schrieb Support <support@example.com>:\n"
        "> Sehr geehrte Frau Berg,\n> bitte leeren Sie den Browser-Cache und melden Sie "
        "sich erneut an.\n"
        "> Danach sollte der Export wieder funktionieren. Mit freundlichen Grüßen\n"
    )
    assert run(rules, "Re: Export", body).language == "en"


@pytest.mark.parametrize("with_model", [False, True])
def test_quoted_text_does_not_decide_category(with_model: bool):
    rules = load_rules(with_model=with_model)
    body = (
        "Hallo,\n\nvielen Dank, das Ticket kann geschlossen werden.\n\nGruß\nTim\n\n"
        "-----Ursprüngliche Nachricht-----\nVon: Support <support@example.com>\n"
        "Gesendet: Montag, 2. März 2026 10:00\nAn: Tim\nBetreff: SAML SSO LDAP API "
        "Schnittstelle\n\n"
        "Die SAML-Schnittstelle, der LDAP-Abgleich und die API sind wieder erreichbar."
    )
    assert run(rules, "AW: Anfrage", body).category == "other"


def test_forwarded_text_counts(rules):
    body = (
        "Hallo Support,\n\nbitte um Prüfung, siehe unten.\n\nGruß\nHelpdesk\n\n"
        "---------- Forwarded message ---------\nFrom: Lea <lea@kunde.de>\nDate: Mon, 2 Mar 2026\n"
        "Subject: Hilfe\nTo: Helpdesk <it@kunde.de>\n\n"
        "Hallo, ich habe mein Passwort vergessen und die Zwei-Faktor-App auf dem alten Handy.\n"
    )
    result = run(rules, "Fwd: Hilfe", body)
    assert result.category == "account_access"


def test_reasons_name_rules_and_phrases(rules):
    result = run(
        rules,
        "SAML login broken",
        "Hi,\n\nour helpdesk has already tried everything, without success.\n\nThanks",
    )
    assert any(r.startswith("category=integration") and "'saml'" in r for r in result.reasons)
    assert any(r.startswith("level=") for r in result.reasons)
    assert any(r.startswith("priority=") for r in result.reasons)
    assert any(r.startswith("language=en") for r in result.reasons)
    assert all(len(r) < 300 for r in result.reasons)


def test_to_dict_is_json(rules):
    d = run(rules, "Passwort", "Ich habe mein Passwort vergessen.").to_dict()
    assert set(d) == {"level", "category", "priority", "language", "confidence", "reasons"}
    json.dumps(d)
    assert 0.0 <= float(d["confidence"]) <= 1.0


def test_no_signal_falls_back(rules):
    result = run(rules, "Hallo", "Hallo zusammen, schönes Wochenende euch allen!")
    assert result.category == "other"
    assert result.confidence <= 0.3


def test_extra_text_counts_a_little(rules):
    base = input_from_text("Screenshot anbei", "Hallo, siehe Screenshot.")
    with_ocr = ClassifierInput(
        subject=base.subject,
        new_text=base.new_text,
        forwarded_text="",
        quoted_text="",
        attachment_names=("screenshot.png",),
        sender="",
        extra_text="Ihr Passwort ist abgelaufen. Passwort zurücksetzen",
    )
    assert classify(with_ocr, rules).category == "account_access"


def test_sender_floor(tmp_path: Path):
    text = (Path(__file__).parents[1] / "src/mailtriage/rules/default.toml").read_text("utf-8")
    text += (
        '\n[[sender_rules]]\ndomain = "key-customer.example"\n'
        'priority_floor = "high"\nnote = "gold SLA"\n'
    )
    path = tmp_path / "rules.toml"
    path.write_text(text, "utf-8")
    rules = load_rules(path)
    subject, body = "Kurze Frage", "Hallo, wo finde ich die Tastenkürzel? Eilt nicht."
    assert run(rules, subject, body, sender="a@key-customer.example").priority == "high"
    assert run(rules, subject, body, sender="a@sub.key-customer.example").priority == "high"
    assert run(rules, subject, body, sender="a@other.example").priority == "low"
    reasons = run(rules, subject, body, sender="a@key-customer.example").reasons
    assert any("sender floor" in r for r in reasons)


# ----------------------------------------------------------------------------- rules errors

_MINIMAL = """
version = 1
[zones]
subject = 1.0
new_text = 1.0
[scoring]
[categories.other]
level = "L1"
[[categories.other.signals]]
weight = 1.0
any = ["hallo"]
[priority]
[priority.thresholds]
urgent = 2.0
high = 1.0
normal = 1.0
low = 1.0
workaround = 1.0
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "r.toml"
    path.write_text(text, "utf-8")
    return load_rules(path)


def test_minimal_rules_file(tmp_path: Path):
    rules = _load(tmp_path, _MINIMAL)
    assert classify(input_from_text("x", "Hallo"), rules).category == "other"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('level = "L1"', 'level = "L4"'),
            r"categories\.other\.level: 'L4' is not one of L1, L2, L3",
        ),
        (
            ("weight = 1.0", 'weight = "x"'),
            r"categories\.other\.signals\[0\]\.weight: expected a number",
        ),
        (
            ('any = ["hallo"]', 'any = ["hal(lo"]'),
            r"categories\.other\.signals\[0\]: pattern 'hal\(lo'",
        ),
        (
            ('any = ["hallo"]', 'anny = ["hallo"]'),
            r"categories\.other\.signals\[0\]\.anny: unknown key",
        ),
        (("urgent = 2.0\n", ""), r"priority\.thresholds\.urgent: missing number"),
        (("version = 1", "version = 2"), r"version: unsupported rules version 2"),
        (
            ("[scoring]", '[scoring]\nfallback_category = "nope"'),
            r"scoring\.fallback_category: 'nope'",
        ),
        (('any = ["hallo"]', 'any = ["x?"]'), r"matches the empty string"),
        (("weight = 1.0", "weight = 1.0\ncap = -0.5"), r"signals\[0\]\.cap: must not be negative"),
        # invalid alone, valid together: each is still checked on its own
        (('any = ["hallo"]', 'any = ["hal(lo", "x)y"]'), r"pattern 'hal\(lo'"),
        (('any = ["hallo"]', 'any = ["(a)b", "x\\\\1"]'), r"pattern 'x\\\\1'"),
        (('any = ["hallo"]', 'any = ["ok", "a{2,1}"]'), r"pattern 'a\{2,1\}'"),
    ],
)
def test_bad_rules_name_the_key(tmp_path: Path, change, message):
    old, new = change
    assert old in _MINIMAL
    with pytest.raises(RulesError, match=message):
        _load(tmp_path, _MINIMAL.replace(old, new, 1))


def test_bad_toml_and_missing_file(tmp_path: Path):
    with pytest.raises(RulesError, match="invalid TOML"):
        _load(tmp_path, "version = = 1")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")


def test_level_rule_unknown_feature(tmp_path: Path):
    text = _MINIMAL + '\n[[level_rules]]\nset_level = "L2"\nfeature = "nope"\n'
    with pytest.raises(RulesError, match=r"level_rules\[0\]\.feature: no such feature 'nope'"):
        _load(tmp_path, text)


def test_sender_rule_validation(tmp_path: Path):
    text = _MINIMAL + '\n[[sender_rules]]\ndomain = "a@b.de"\npriority_floor = "high"\n'
    with pytest.raises(RulesError, match=r"sender_rules\[0\]\.domain"):
        _load(tmp_path, text)
    text = _MINIMAL + '\n[[sender_rules]]\ndomain = "b.de"\npriority_floor = "asap"\n'
    with pytest.raises(RulesError, match=r"sender_rules\[0\]\.priority_floor"):
        _load(tmp_path, text)


def test_pattern_syntax(tmp_path: Path):
    text = _MINIMAL.replace('any = ["hallo"]', 'de = ["grüße", "*passwort", "sync client", "api"]')
    rules = _load(tmp_path, text)

    def hit(body: str) -> bool:
        reasons = classify(input_from_text("", body), rules).reasons
        return any(r.startswith("category=other: score") for r in reasons)

    assert hit("Viele Grüsse")  # ß/ss folded
    assert hit("Das Benutzerpasswort")  # * matches inside a word
    assert hit("der Sync-Client")  # space matches hyphen
    assert hit("die API")
    assert not hit("die apiary")  # short words match whole only
    assert not hit("kennwort")


# --------------------------------------------------------------- bounded work, layout


def test_huge_body_is_read_only_up_to_a_bounded_prefix(rules):
    from mailtriage.pipeline.classify import MAX_ZONE_CHARS

    head = "Hallo, ich kann mich nicht anmelden, mein Passwort wird abgelehnt. "
    filler = "Weitere Protokollzeilen ohne Bedeutung folgen hier. "
    body = head + filler * (30_000_000 // len(filler))
    assert len(body) >= 30_000_000
    inp = ClassifierInput("Login", body, "", body, (), "", extra_text=body)
    classify(inp, rules)  # warm up the language model
    started = time.perf_counter()
    result = classify(inp, rules)
    elapsed = time.perf_counter() - started
    prefix = body[:MAX_ZONE_CHARS]
    expected = classify(ClassifierInput("Login", prefix, "", prefix, (), "", prefix), rules)
    assert result == expected
    assert result.category == "account_access"
    assert elapsed < 0.25, f"{elapsed * 1000:.0f} ms for a 30 MB body"


def test_rules_are_a_value_parsed_without_io():
    import tomllib
    from importlib import resources

    from mailtriage.pipeline.classify import parse_rules

    text = resources.files("mailtriage").joinpath("rules/default.toml").read_text("utf-8")
    parsed = parse_rules(tomllib.loads(text), "inline")
    loaded = load_rules(with_model=False)
    inp = input_from_text("VPN", "Der VPN-Tunnel bricht ab, Zertifikat abgelaufen?")
    assert classify(inp, parsed) == classify(inp, loaded)
    with pytest.raises(RulesError, match="categories"):
        parse_rules({"version": 1, "zones": {}, "scoring": {}, "priority": {}}, "inline")


def test_file_reading_lives_at_the_edge_not_in_the_pipeline():
    from mailtriage.pipeline import classify as package

    assert not hasattr(package, "load_rules") and not hasattr(package, "classify_file")
    assert package.fold("Größe  ÄNDERN") == "groesse aendern"


def test_loading_compiles_the_same_expressions_as_pattern_by_pattern() -> None:
    """Start-up compiles each group's alternation once; every pattern it accepted that
    way also compiles alone, and the group's expression is the one of its patterns."""
    import re

    from mailtriage.pipeline.classify.patterns import compile_terms

    groups = load_rules().scanner.groups
    assert len(groups) > 50
    for group in groups:
        assert group.regex.pattern == compile_terms(group.terms)
        for term in group.terms:
            re.compile(compile_terms([term]))


@pytest.mark.parametrize(
    ("text", "least", "expected"),
    [("", 0, True), ("", 1, False), ("ab 12 c", 3, True), ("ab 12 c", 4, False), ("äöü", 3, True)],
)
def test_has_letters_counts_letters_only_as_far_as_needed(
    text: str, least: int, expected: bool
) -> None:
    from mailtriage.pipeline.language import has_letters

    assert has_letters(text, least) is expected
    assert has_letters(text, least) is (sum(ch.isalpha() for ch in text) >= least)
