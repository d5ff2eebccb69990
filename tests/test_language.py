"""detect_language on the customer's new text."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailtriage.pipeline import language
from mailtriage.pipeline.language import detect_language
from mailtriage.runners.language_model import prepare_language_model


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hallo, seit heute Morgen kann ich mich nicht mehr anmelden. Können Sie helfen?", "de"),
        ("Grüezi, bei uns funktioniert der Export nicht mehr, merci für die Hilfe.", "de"),
        ("Hi, since this morning I cannot log in anymore. Could you help?", "en"),
        ("how do i get dates shown as dd.mm.yyyy in my view? thx", "en"),
        ("Bonjour, depuis hier je n'arrive plus à me connecter à la plateforme.", "other"),
        ("Buongiorno, il titolo del grafico viene tagliato nel dashboard.", "other"),
        ("Goedemorgen, onze synchronisatie via de API loopt vast op fouten.", "other"),
        ("Dzień dobry, nie mogę się zalogować od rana.", "other"),
    ],
)
def test_languages(text, expected):
    lang, conf = detect_language(text)
    assert lang == expected
    assert 0.5 < conf <= 1.0


def test_noise_is_ignored():
    text = (
        'Hallo, der Import meldet "Login failed for user dm_connector" (error 18456). '
        "Siehe https://example.com/log und schreiben Sie an it@example.com."
    )
    assert detect_language(text)[0] == "de"


@pytest.mark.parametrize("text", ["", "   ", "OK", "12.03.2026 14:00", "https://example.com"])
def test_too_short_is_other_with_zero_confidence(text):
    assert detect_language(text) == ("other", 0.0)


def test_the_cached_model_answers_like_the_packaged_one(tmp_path: Path) -> None:
    texts = [
        "Hallo, unser Drucker druckt seit heute nicht mehr.",
        "Hello, I forgot my password, please reset it",
        "Bonjour, je n'arrive pas à me connecter au serveur",
        "Grüezi mitenand, mis Passwort gaht nüme",
    ]
    packaged = language.packaged_identifier()
    expected = [packaged.rank(t) for t in texts]
    saved = language._identifier
    try:
        for _ in range(2):  # the first call writes the cache, the second reads it
            language.use_identifier(None)
            prepare_language_model(tmp_path)
            cached = language._identifier
            assert cached is not packaged
            assert [cached.rank(t) for t in texts] == expected
        [directory] = tmp_path.iterdir()
        assert directory.name.startswith("langid-")
    finally:
        language.use_identifier(saved)


def test_compact_model_scores_like_py3langid_own_loader():
    """The compact loader (langid_model) must give py3langid's own scores."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from mailtriage.langid_model import load_identifier
    from mailtriage.pipeline.language import CANDIDATE_LANGUAGES

    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    reference.set_languages([x for x in CANDIDATE_LANGUAGES if x in set(reference.labels)])
    compact = load_identifier(CANDIDATE_LANGUAGES)
    assert compact.nb_classes == reference.nb_classes
    texts = [
        "Hallo, seit heute Morgen kann ich mich nicht mehr anmelden.",
        "Hi, since this morning I cannot log in anymore. Could you help?",
        "Bonjour, depuis hier je n'arrive plus à me connecter.",
        "Dzień dobry, nie mogę się zalogować od rana.",
        "Добрый день, не могу войти в систему.",
    ]
    for text in texts:
        ours, theirs = compact.rank(text), reference.rank(text)
        assert [lang for lang, _ in ours[:5]] == [lang for lang, _ in theirs[:5]]
        assert ours[0][1] == pytest.approx(theirs[0][1], abs=1e-6)
