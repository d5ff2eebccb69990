"""split_body: new text vs quoted history, signature, disclaimer and forwarded message."""

from __future__ import annotations

import pytest

from mailtriage.pipeline.text import BodyParts, split_body

from conftest import CORPUS, LABELED


def test_plain_message_has_no_history():
    parts = split_body("Hallo,\n\ndie Suche findet nichts.\n")
    assert parts == BodyParts("Hallo,\n\ndie Suche findet nichts.", "", "", "")


@pytest.mark.parametrize(
    "header",
    [
        "Am 03.07.2026 um 05:21 schrieb Data & More Support <support@example.com>:",
        "Am Mo., 3. Juli 2026 um 05:21 Uhr schrieb Max Muster <max@example.com>:",
        "On Sun, 10 May 2026 at 01:25, Support <support@example.com> wrote:",
        "On 10/05/2026 09:12, Support wrote:",
        "Le lun. 4 mai 2026 à 10:00, Support <support@example.com> a écrit :",
    ],
)
def test_reply_headers_start_the_quote(header):
    body = f"Danke, hat geklappt.\n\n{header}\n> Bitte Cache leeren.\n> Gruß Support\n"
    parts = split_body(body)
    assert parts.new_text == "Danke, hat geklappt."
    assert "Bitte Cache leeren." in parts.quoted
    assert parts.forwarded == ""


def test_wrapped_wrote_header():
    body = (
        "Still broken.\n\nOn Sun, 10 May 2026 at 01:25, Data & More Support <support@example.com>\n"
        "wrote:\n> Please try again.\n"
    )
    parts = split_body(body)
    assert parts.new_text == "Still broken."
    assert "Please try again." in parts.quoted


@pytest.mark.parametrize(
    "separator",
    [
        "-----Original Message-----",
        "-----Ursprüngliche Nachricht-----",
        "________________________________",
    ],
)
def test_outlook_header_block_is_quote(separator):
    body = (
        "Hallo Herr Berg,\n\ndas Problem besteht weiterhin.\n\nMit freundlichen "
        "Grüßen\nAnna Schulz\n"
        f"{separator}\nVon: Support <support@example.com>\nGesendet: Montag, 2. März 2026 10:00\n"
        "An: Anna Schulz <anna@example.com>\nBetreff: [#123] Export\n\nBitte erneut versuchen.\n"
    )
    parts = split_body(body, subject="AW: [#123] Export")
    assert parts.new_text == "Hallo Herr Berg,\n\ndas Problem besteht weiterhin."
    assert parts.signature.startswith("Mit freundlichen Grüßen")
    assert "Bitte erneut versuchen." in parts.quoted
    assert parts.forwarded == ""


def test_english_outlook_block_without_separator():
    body = (
        "Any news?\n\nFrom: Support <support@example.com>\nSent: Monday, March 2, 2026 10:00 AM\n"
        "To: Bob <bob@example.com>\nSubject: RE: Export\n\nWe are looking into it.\n"
    )
    parts = split_body(body)
    assert parts.new_text == "Any news?"
    assert "We are looking into it." in parts.quoted


def test_gmail_forward_is_extracted():
    body = (
        "Hi,\n\nsee below from our office manager. Can you help?\n\nCheers,\nMark\nIT\n\n"
        "---------- Forwarded message ---------\nFrom: Fiona <fiona@example.com>\n"
        "Date: Mon, 1 Jun 2026 at 12:06\nSubject: Locked out\nTo: Mark <mark@example.com>\n\n"
        "Hi Mark,\n\nI am locked out of my account since this morning.\n\nThanks,\nFiona\n"
    )
    parts = split_body(body, subject="Fwd: Locked out")
    assert parts.new_text == "Hi,\n\nsee below from our office manager. Can you help?"
    assert parts.forwarded == "Hi Mark,\n\nI am locked out of my account since this morning."
    assert parts.signature.startswith("Cheers,")
    assert parts.quoted == ""


@pytest.mark.parametrize(
    "marker",
    [
        "-------- Weitergeleitete Nachricht --------",
        "-----Weitergeleitete Nachricht-----",
        "Begin forwarded message:",
        "Anfang der weitergeleiteten Nachricht:",
    ],
)
def test_forward_markers(marker):
    body = (
        "Hallo Support,\n\nbitte prüfen.\n\n"
        f"{marker}\nBetreff: Hilfe\nDatum: Thu, 14 May 2026 16:23:32 +0200\nVon: Birgit "
        "<b@example.com>\n"
        "An: IT <it@example.com>\n\nDer Bericht lässt sich nicht planen.\n"
    )
    parts = split_body(body)
    assert parts.new_text == "Hallo Support,\n\nbitte prüfen."
    assert parts.forwarded == "Der Bericht lässt sich nicht planen."


def test_outlook_forward_needs_forward_subject_or_hint():
    block = (
        "________________________________\nVon: Kienzle, Petra <p@example.com>\n"
        "Gesendet: Donnerstag, 5. Februar 2026 11:31\nAn: EDV <edv@example.com>\n"
        "Betreff: Export bricht ab\n\nHallo Michael,\n\nder Export hängt bei 80 %.\n\nGruß Petra\n"
    )
    fwd = split_body(
        "Sehr geehrte Damen und Herren,\n\nbitte um Hilfe.\n\n" + block, subject="WG: Export"
    )
    assert fwd.forwarded == "Hallo Michael,\n\nder Export hängt bei 80 %."
    hint = split_body("Hallo,\n\nanbei die Meldung aus unserem Team.\n\n" + block, subject="Export")
    assert "der Export hängt bei 80 %." in hint.forwarded
    reply = split_body("Hallo,\n\nimmer noch kaputt.\n\n" + block, subject="AW: Export")
    assert reply.forwarded == ""
    assert "der Export hängt bei 80 %." in reply.quoted


def test_forward_followed_by_older_history():
    body = (
        "FYI, see below.\n\n---------- Forwarded message ---------\nFrom: A <a@example.com>\n"
        "Date: Mon, 1 Jun 2026\nSubject: X\nTo: B <b@example.com>\n\nThe import fails.\n\n"
        "On Sun, 31 May 2026 at 10:00, C <c@example.com> wrote:\n> older text\n"
    )
    parts = split_body(body)
    assert parts.forwarded == "The import fails."
    assert "older text" in parts.quoted


def test_interleaved_quote_lines_move_to_quoted():
    body = "> Which browser do you use?\nChrome 120.\n> Which version?\n5.3\n"
    parts = split_body(body)
    assert "Chrome 120." in parts.new_text and "5.3" in parts.new_text
    assert "Which browser" in parts.quoted


@pytest.mark.parametrize(
    ("closing", "name_block"),
    [
        ("Mit freundlichen Grüßen", "Katrin Weller\nLeiterin Finanzen\nMuster GmbH"),
        ("Viele Grüße", "Andreas"),
        ("Freundliche Grüsse", "Sandra Kälin\nQualitätssicherung"),
        ("Best regards,", "Sofia Andersson"),
        ("Kind regards,", "Rhona Kerr\nHead of Compliance"),
        ("Danke und schöne Grüße", "Gernot"),
        ("Thanks,", "Morag Dunbar\nFinance Director"),
        ("LG", "Lukas"),
    ],
)
def test_signature_closings(closing, name_block):
    body = f"Hallo,\n\ndas Problem ist reproduzierbar.\n\n{closing}\n{name_block}\n"
    parts = split_body(body)
    assert parts.new_text == "Hallo,\n\ndas Problem ist reproduzierbar."
    assert parts.signature.startswith(closing)


def test_dash_signature_and_disclaimer():
    body = (
        "Hello,\n\nexports time out.\n\n-- \nJane Doe\nACME Ltd\n\n"
        "This e-mail may contain confidential and/or privileged information. If you are not the "
        "intended recipient, please notify the sender and delete this e-mail.\n"
    )
    parts = split_body(body)
    assert parts.new_text == "Hello,\n\nexports time out."
    assert "confidential" in parts.signature


def test_german_disclaimer_without_closing():
    body = (
        "Hallo,\n\nbitte Konto entsperren.\n\n"
        "Diese E-Mail enthält vertrauliche und/oder rechtlich geschützte Informationen. Wenn Sie "
        "nicht der richtige Adressat sind, informieren Sie bitte sofort den Absender.\n"
    )
    parts = split_body(body)
    assert parts.new_text == "Hallo,\n\nbitte Konto entsperren."
    assert "vertrauliche" in parts.signature


def test_bare_name_block_is_signature():
    parts = split_body(
        "Hi,\n\nnobody can log in since 9:00.\n\nPiotr Zielinski\nIT Infrastructure, Wisla\n"
    )
    assert parts.new_text == "Hi,\n\nnobody can log in since 9:00."
    assert parts.signature.startswith("Piotr Zielinski")


def test_mobile_footer():
    parts = split_body("how do i change the date format? thx, Erik\n\nSent from my iPhone\n")
    assert parts.new_text == "how do i change the date format? thx, Erik"
    assert parts.signature == "Sent from my iPhone"


def test_thanks_at_the_start_is_not_a_signature():
    body = (
        "Danke für die schnelle Antwort.\n\nLeider kommt der Fehler weiterhin, auch nach dem "
        "Neustart des Rechners heute früh.\n"
    )
    assert split_body(body).new_text.startswith("Danke für die schnelle Antwort.\n\nLeider")


def test_indented_html_conversion_and_crlf():
    body = (
        "  Guten Tag,\r\n\r\n  der Import bricht ab.\r\n\r\n"
        "  Mit freundlichen Grüßen\r\n    Jan\r\n"
    )
    parts = split_body(body)
    assert parts.new_text == "Guten Tag,\n\nder Import bricht ab."
    assert parts.signature.startswith("Mit freundlichen Grüßen")


def test_empty_and_quote_only():
    assert split_body("") == BodyParts("", "", "", "")
    parts = split_body("> only a quote\n> nothing new\n")
    assert parts.new_text == ""
    assert "only a quote" in parts.quoted


def test_a_huge_body_is_searched_only_at_its_top() -> None:
    from mailtriage.pipeline.text import MAX_SPLIT_CHARS

    log = "".join(f"> line {i} of a pasted log\n" for i in range(MAX_SPLIT_CHARS // 10))
    reply = "Hallo,\nanbei das Log.\n\nAm 03.07.2026 um 05:21 schrieb Anna <a@b.example>:\n"
    parts = split_body(reply + log)
    assert parts.new_text == "Hallo,\nanbei das Log."
    assert parts.quoted.endswith(f"line {MAX_SPLIT_CHARS // 10 - 1} of a pasted log")
    plain = "".join(f"Zeile {i}\n" for i in range(MAX_SPLIT_CHARS // 5))
    assert split_body(plain).new_text == plain.strip()


_EDGE_BODIES = [
    "Hallo,\n\ndie Suche findet nichts.",
    "Hallo\n\n-----------",
    "Danke.\n\nOn Mon, 4 May 2026 at 10:00, Support <s@example.com>\nwrote:",
    "Danke.\nOn Mon, 4 May 2026 at 10:00, Support <s@example.com> wrote:",
    "Text\n> quote\n>",
    "Siehe unten.\n\nVon: a@example.com\nGesendet: Montag\nAn: b@example.com\nBetreff: c",
    "Geht nicht.\n\nViele Grüße\nJan Muster\nMuster AG",
    "  eingerückt\n    mehr\n\n-- \nSig",
    "---------- Forwarded message ---------\nFrom: x@example.com\nSubject: y\n\nbody",
    "",
]


def _bodies() -> list[str]:

    from mailtriage.pipeline.parse import ParseError, parse_message

    texts = list(_EDGE_BODIES)
    for path in sorted(CORPUS.rglob("*.eml"))[::4] + sorted(LABELED.rglob("*.eml")):
        try:
            texts.append(parse_message(path.read_bytes()).text)
        except ParseError:
            continue
    return texts


def test_texts_that_differ_in_line_endings_split_alike():
    """same_split's claim, on corpus and labelled bodies and edge cases: CRLF or CR line
    endings and blank lines at the end change no part of the split, whatever the
    subject; other differences are not claimed."""
    from mailtriage.pipeline.text import MAX_SPLIT_CHARS, same_split

    texts = _bodies()
    assert len(texts) > 600
    for text in texts:
        variants = [
            text + "\n",
            text + "\n\n\n",
            text.replace("\n", "\r\n") + "\r\n",
            text.replace("\n", "\r") + "\r",
        ]
        for subject in ("", "WG: Anfrage"):
            expected = split_body(text, subject=subject)
            for variant in variants:
                assert same_split(variant, text)
                assert split_body(variant, subject=subject) == expected, (variant, subject)
    assert not same_split("Hallo \nText", "Hallo\nText")
    assert not same_split("\nHallo", "Hallo")
    assert not same_split("x" * (MAX_SPLIT_CHARS + 1), "x" * (MAX_SPLIT_CHARS + 1) + "\n")


def test_the_loop_guard_reads_the_same_fresh_text_from_a_shared_split():
    """analyse() splits the body once and hands the split to the loop guard; the guard's
    view of the new text is the one its own split gives (shared for most real mails)."""
    from functools import partial

    from mailtriage.pipeline.loops.mail import Mail
    from mailtriage.pipeline.parse import ParseError, parse_message
    from mailtriage.pipeline.text import same_split

    shared = total = 0
    for path in sorted(CORPUS.rglob("*.eml")) + sorted(LABELED.rglob("*.eml")):
        try:
            parsed = parse_message(path.read_bytes())
        except ParseError:
            continue
        own = Mail(parsed, None)
        given = Mail(parsed, None, partial(split_body, parsed.text, subject=parsed.subject))
        assert given.fresh == own.fresh, path
        total += 1
        shared += same_split(own.text, parsed.text)
    assert shared > total // 2  # the shared split was exercised, not only the own one
