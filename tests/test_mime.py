"""The shared MIME primitives: total decoders and the one text fold."""

from __future__ import annotations

import pytest

from mailtriage.pipeline.mime import (
    clean,
    decode_8bit_header,
    decode_text,
    decode_words,
    find_message_id,
    fold,
    html_to_text,
    message_ids,
    normalise_message_id,
)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Rückläufer", "ruecklaeufer"),
        ("RÜCKLÄUFER", "ruecklaeufer"),
        ("Ruecklaeufer", "ruecklaeufer"),
        ("Grüße, Straße", "gruesse, strasse"),
        ("u\u0308ber", "ueber"),  # decomposed umlaut
        ("Réponse  automatique\t\n(é)", "reponse automatique (e)"),
        ("I\u2019m \u201cout\u201d \u2013 back", 'i\'m "out" - back'),
        ("ﬁle", "file"),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_fold_keeps_lines_when_asked() -> None:
    assert fold("  Zeile  Eins \n\tZWEI  ", keep_lines=True) == "zeile eins\nzwei"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?q?J=C3=BCrgen?= <j@x>", "Jürgen <j@x>"),
        ("=?utf-8?B?####?= tail", " tail"),
        ("=?x-unknown-123?q?abc?=", "abc"),
        ("=?utf-8?B?w6?=", "\ufffd"),
        ("\udcc3\udca4rger", "ärger"),
        ("\udce4rger", "ärger"),
    ],
)
def test_decode_words_never_raises(value: str, expected: str) -> None:
    assert decode_words(value) == expected


def test_decode_8bit_header_leaves_text_alone() -> None:
    assert decode_8bit_header("plain ascii") == "plain ascii"
    assert decode_8bit_header("schon Text: ä") == "schon Text: ä"


def test_decode_text_repairs_or_notes_the_charset() -> None:
    assert decode_text("Grüße".encode(), "utf-8") == ("Grüße", None)
    text, defect = decode_text("Grüße aus Köln".encode("latin-1"), "x-unknown-123")
    assert "K" in text and defect is not None and defect.startswith("charset:")
    text, _ = decode_text(b"a\x00b\x1bc\td", "utf-8")
    assert text == "abc\td"


def test_clean_drops_control_characters_only() -> None:
    assert clean("a\x00b\x07c\x7f\r\n\td") == "abc\r\n\td"
    assert clean("plain") == "plain"


def test_message_ids() -> None:
    assert normalise_message_id("<a\x00b@x>") == "ab@x"
    assert normalise_message_id("no id here") is None
    assert message_ids("<a@b> junk <c@d> <a@b>") == ("a@b", "c@d")


def test_html_to_text_has_no_markup() -> None:
    text = html_to_text("<p>Hallo</p><script>x()</script><p>Welt &amp; mehr</p>")
    assert "Hallo" in text and "Welt & mehr" in text and "<" not in text and "x()" not in text
    assert html_to_text("   ") == ""


def test_find_message_id_reads_what_robots_write() -> None:
    assert find_message_id("<a@b> (comment)") == "a@b"
    assert find_message_id("junk a@b.example, c@d") == "a@b.example"
    assert find_message_id("x" * 300) is None
