"""Impact facts (priority by impact, GUIDELINES.md) in German and English, with negations."""

from __future__ import annotations

import pytest

from mailtriage.pipeline.classify import fold
from mailtriage.pipeline.classify.impact import (
    ImpactFacts,
    extract_facts,
    priority_from_facts,
)


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
    ],
)
def test_priority_by_impact_not_by_words(text: str, priority: str) -> None:
    got, why = priority_from_facts(extract_facts(fold(text)))
    assert got == priority, why


def test_default_when_no_fact_decides() -> None:
    assert priority_from_facts(ImpactFacts(), "low") == ("low", "no impact fact")
    assert priority_from_facts(ImpactFacts(pressure=True), "normal")[0] == "normal"
