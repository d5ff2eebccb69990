"""Impact facts (priority by impact, GUIDELINES.md) in German and English, with negations."""

from __future__ import annotations

import pytest

from mailtriage.pipeline.classify import fold
from mailtriage.pipeline.classify.impact import (
    ImpactFacts,
    extract_facts,
    priority_from_facts,
)

from conftest import LABELED


def facts(text: str) -> set[str]:
    return set(extract_facts(fold(text)).names())


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        ("Es gibt leider keine Umgehung, wir warten.", {"no_workaround"}, {"workaround"}),
        ("There is no workaround at the moment.", {"no_workaround"}, {"workaround"}),
        ("Als Workaround tragen wir es vorerst manuell ein.", {"workaround"}, {"no_workaround"}),
        ("For now we enter the orders manually.", {"workaround"}, {"no_workaround"}),
        ("Das ist nicht dringend, bitte bei Gelegenheit.", {"not_urgent"}, {"pressure"}),
        ("It is not urgent, no rush.", {"not_urgent"}, {"pressure"}),
        ("Dringend!!! Bitte sofort melden.", {"pressure"}, {"not_urgent"}),
        ("Es gab keinen Datenverlust, alles ist noch da.", set(), {"data_loss"}),
        ("There was no data loss.", set(), {"data_loss"}),
        ("Seit dem Update sind Daten verloren gegangen.", {"data_loss"}, set()),
        ("Records were deleted overnight by the sync.", {"data_loss"}, set()),
        ("Alle Mitarbeiter können nicht mehr arbeiten.", {"many_users", "blocked"}, set()),
        ("The whole team is blocked.", {"many_users", "blocked"}, set()),
        ("Wir sind nicht blockiert, nur genervt.", set(), {"blocked"}),
        ("We are not blocked by this.", set(), {"blocked"}),
        ("Nur ein Kollege ist betroffen, die anderen arbeiten.", {"single_user"}, set()),
        ("Die Frist für die Meldung ist Freitag.", {"deadline"}, set()),
        ("We need this before month-end close.", {"deadline"}, set()),
        ("Just a cosmetic thing: the label has a typo.", {"cosmetic"}, set()),
        # a group that cannot do its work, in the same clause; one person is not a team
        ("Die Buchhaltung kann dadurch keine Rechnungen freigeben.", {"team_unable"}, set()),
        ("Without the add-in the team can't file e-mails.", {"team_unable"}, set()),
        ("Nobody on my team can find anything.", {"team_unable"}, set()),
        ("I can't find the export button.", set(), {"team_unable"}),
        ("Ich kann mich nicht anmelden.", set(), {"team_unable"}),
        # the way around is not workable
        ("Einen Ausweg haben wir nicht.", {"no_workaround"}, {"workaround"}),
        ("Splitting it into 40 pieces isn't realistic.", {"no_workaround"}, set()),
        (
            "Von Hand sind das über 1.000 Seiten, das ist nicht zu schaffen.",
            {"no_workaround"},
            set(),
        ),
        # "the rest still works" is no workaround for what fails
        ("Uploads fail; downloading still works.", set(), {"workaround"}),
        ("If I upload in batches of 50 it works fine, so we're managing.", {"workaround"}, set()),
        ("Eine Kollegin springt vorerst für mich ein.", {"workaround"}, set()),
        # everything works, it only looks wrong
        ("Funktionieren tut der Knopf ganz normal.", {"works_anyway"}, set()),
        (
            "It is not blocking anything, it just looks unprofessional.",
            {"works_anyway", "cosmetic"},
            set(),
        ),
        ("Betrifft alle Filialen, ist aber nur optisch.", {"cosmetic", "many_users"}, set()),
        # data shown to outsiders is a security incident
        (
            "Damit können jetzt Außenstehende die Unterlagen von 300 Patienten sehen.",
            {"security"},
            set(),
        ),
        ("The folder was publicly accessible for two days.", {"security"}, set()),
        # nobody else can do it
        ("Ich bin diesen Monat die Einzige, die den Lauf machen kann.", {"only_one"}, set()),
        ("Nobody else on my team has these files set up.", {"only_one"}, set()),
        # a date ahead, not one gone by
        ("We need an estimate by 21 October for the budget meeting.", {"dated"}, set()),
        ("Bis Freitag muss die Meldung raus.", {"dated"}, set()),
        ("Seit Montag geht der Export nicht.", set(), {"dated"}),
        # a wish for the product, not "it would be great if you fixed it today"
        ("Schön wäre eine Fristenübersicht in einer künftigen Version.", {"wish"}, {"deadline"}),
        ("Wäre super, wenn das heute noch klappt.", set(), {"wish"}),
        ("Die Fristen für Rechnungen sind 10 Jahre, welche Regel greift?", set(), {"deadline"}),
    ],
)
def test_facts_with_negations(text: str, present: set[str], absent: set[str]) -> None:
    found = facts(text)
    assert present <= found, found
    assert not (absent & found), found


@pytest.mark.parametrize(
    ("text", "priority"),
    [
        ("Die Produktion steht, komplett ausgefallen.", "urgent"),
        ("Alle Nutzer können nicht mehr arbeiten, keine Umgehung.", "urgent"),
        ("The finance team cannot close the month, no workaround, deadline Friday.", "high"),
        ("The finance team cannot close the month, but for now we export manually.", "normal"),
        ("Dringend! ASAP! Wie ändere ich mein Profilbild?", "normal"),
        ("URGENT: where do I find the export button?", "normal"),
        ("Kleiner Schönheitsfehler, nicht dringend.", "low"),
        ("Das Logo ist unscharf, betrifft alle Filialen, ist aber nur optisch.", "low"),
        ("Without the add-in the team can't file e-mails; there is no other way.", "high"),
        ("Außenstehende können die Unterlagen sehen.", "urgent"),
        ("Would be nice to have a dashboard in a future version.", "low"),
        ("Would be nice to have a dashboard; we need an estimate by 17 April.", "normal"),
    ],
)
def test_priority_by_impact_not_by_words(text: str, priority: str) -> None:
    got, why = priority_from_facts(extract_facts(fold(text)))
    assert got == priority, why


def test_default_when_no_fact_decides() -> None:
    assert priority_from_facts(ImpactFacts(), "low") == ("low", "no impact fact")
    assert priority_from_facts(ImpactFacts(pressure=True), "normal")[0] == "normal"


def test_each_fact_pattern_finds_what_its_finditer_finds() -> None:
    """extract_facts tries each pattern only where the one pass over all of them found a
    match start: on the labelled mails and on random phrase soup, every pattern yields
    the very matches (spans, in order) its own finditer yields."""
    import random

    from mailtriage.pipeline.classify import input_from_text
    from mailtriage.pipeline.classify.impact import _FACT_PATTERNS, _fact_starts
    from mailtriage.pipeline.classify.scoring import model_text
    from mailtriage.pipeline.parse import parse_message
    from mailtriage.pipeline.regex_prefix import finditer_at

    texts = []
    for path in sorted(LABELED.rglob("*.eml")):
        msg = parse_message(path.read_bytes())
        texts.append(model_text(input_from_text(msg.subject, msg.text, (), msg.sender)))
    rng = random.Random(3)
    words = "alle nutzer keiner kann nicht mehr arbeiten we can't work no workaround "
    words += "dringend asap not urgent 50 users whole team by friday am 28.09. wir die "
    words += "kollegen daten geloescht typo nur optisch idee bitte - , . 1 22"
    vocabulary = words.split()
    texts += [" ".join(rng.choices(vocabulary, k=rng.randint(0, 40))) for _ in range(400)]
    assert len(texts) > 700
    matched = 0
    for text in texts:
        starts = _fact_starts(text)
        for pattern in _FACT_PATTERNS:
            ours = [m.span() for m in finditer_at(pattern, text, starts)]
            assert ours == [m.span() for m in pattern.finditer(text)], (pattern.pattern, text)
            matched += len(ours)
    assert matched > 500  # the patterns did match: the comparison is not of empty lists
