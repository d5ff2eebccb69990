"""Reply prefixes and the [DM-000123] tag in subjects of real clients."""

from __future__ import annotations

import time

import pytest

from mailtriage.pipeline.subject_tag import (
    find_ticket_tag,
    is_forward_subject,
    is_reply_subject,
    strip_prefixes,
)


@pytest.mark.parametrize(
    ("subject", "stripped", "reply", "forward"),
    [
        # English Outlook / Gmail / Apple Mail
        ("Re: Printer offline", "Printer offline", True, False),
        ("RE: RE: Printer offline", "Printer offline", True, False),
        ("Fwd: Printer offline", "Printer offline", False, True),
        ("FW: Printer offline", "Printer offline", False, True),
        ("Fw: Re: Printer offline", "Printer offline", True, True),
        ("Re: [DM-000123] Printer offline", "[DM-000123] Printer offline", True, False),
        # German Outlook / Thunderbird
        ("AW: [DM-000123] Drucker offline", "[DM-000123] Drucker offline", True, False),
        ("Aw: AW: WG: Drucker offline", "Drucker offline", True, True),
        ("WG: Drucker offline", "Drucker offline", False, True),
        ("Antw: Drucker", "Drucker", True, False),
        ("Antwort: Drucker", "Drucker", True, False),
        # Nordic
        ("SV: Skrivaren fungerar inte", "Skrivaren fungerar inte", True, False),
        ("VS: Tulostin", "Tulostin", True, False),
        ("VB: Skrivaren", "Skrivaren", False, True),
        ("VL: Tulostin", "Tulostin", False, True),
        # Italian, French, Spanish
        ("Rif: Stampante", "Stampante", True, False),
        ("Ref: Stampante", "Stampante", True, False),
        ("TR: Imprimante", "Imprimante", False, True),
        ("RE : TR : Imprimante", "Imprimante", True, True),
        ("RV: Impresora", "Impresora", False, True),
        # Numbered forms
        ("RE[2]: Printer", "Printer", True, False),
        ("Re^2: Printer", "Printer", True, False),
        ("Re(2): Printer", "Printer", True, False),
        ("AW[12]: Drucker", "Drucker", True, False),
        # Full-width colon (Japanese/Chinese clients) and spacing
        ("Re：Printer", "Printer", True, False),
        ("  re:   Printer  ", "Printer", True, False),
        # Mailer tags are not ours: kept, prefixes around them removed
        ("[EXTERNAL] RE: Printer", "[EXTERNAL] Printer", True, False),
        ("RE: [EXTERNAL] AW: [DM-000123] Drucker", "[EXTERNAL] [DM-000123] Drucker", True, False),
        ("[SPAM?] Invoice", "[SPAM?] Invoice", False, False),
        ("[DM-000123] AW: Drucker", "[DM-000123] Drucker", True, False),
        # Not prefixes
        ("Printer offline", "Printer offline", False, False),
        ("Rechnung: offen", "Rechnung: offen", False, False),
        ("Reason: broken", "Reason: broken", False, False),
        ("Frage zu Re: und AW:", "Frage zu Re: und AW:", False, False),
        ("Fwdx: Printer", "Fwdx: Printer", False, False),
        ("Re[1234]: Printer", "Re[1234]: Printer", False, False),
        ("Area: 51", "Area: 51", False, False),
        ("RE:", "", True, False),
        ("", "", False, False),
    ],
)
def test_prefixes(subject, stripped, reply, forward):
    assert strip_prefixes(subject) == stripped
    assert is_reply_subject(subject) is reply
    assert is_forward_subject(subject) is forward


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("[DM-000123] Drucker offline", "DM-000123"),
        ("AW: [DM-000123] Drucker offline", "DM-000123"),
        ("Re: Drucker offline [DM-000123]", "DM-000123"),
        ("Re: [dm-123] printer", "DM-000123"),
        ("Re: [Dm-0000123] printer", "DM-000123"),
        ("Re: [DM#123] printer", "DM-000123"),
        ("Re: [ DM - 000123 ] printer", "DM-000123"),
        ("Re: ［ＤＭ－０００１２３］ printer", "DM-000123"),  # full-width (NFKC)
        ("Re: [DM-1234567] printer", "DM-1234567"),  # past six digits
        ("Re: [DM-000005] Fwd: [DM-000003] printer", "DM-000005"),  # first wins
        ("Re: [XY-000123] [DM-000007]", "DM-000007"),  # other prefixes skipped
        # Not a tag
        ("Re: DM-000123 printer", None),  # no brackets: could be a product name
        ("Re: [XY-000123] printer", None),
        ("Re: [DMX-000123] printer", None),
        ("Re: [D-000123] printer", None),
        ("Re: [DM-000000] printer", None),
        ("Re: [DM-1234567890] printer", None),  # absurd number
        ("Re: [DM-99999999999999999999] printer", None),
        ("Re: [DM-12a] printer", None),
        ("Re: [DM-] printer", None),
        ("Re: [DM-١٢٣] printer", None),  # Arabic-Indic digits are not ticket numbers
        ("Re: (DM-000123) printer", None),
        ("Re: [DM_000123] printer", None),
        ("", None),
    ],
)
def test_find_ticket_tag(subject, expected):
    assert find_ticket_tag(subject) == expected


def test_find_ticket_tag_with_configured_prefix():
    assert find_ticket_tag("AW: [hd-42] x", prefix="HD") == "HD-000042"
    assert find_ticket_tag("AW: [DM-42] x", prefix="HD") is None


@pytest.mark.parametrize(
    "subject",
    ["Re: " * 50_000 + "x", "[" * 200_000, "[DM-" * 50_000, "[EXTERNAL] " * 30_000 + "RE: x"],
)
def test_hostile_long_subjects_are_fast(subject):
    started = time.monotonic()
    strip_prefixes(subject)
    find_ticket_tag(subject)
    is_reply_subject(subject)
    assert time.monotonic() - started < 2


def test_remove_ticket_tags_only_ours_when_a_prefix_is_given() -> None:
    from mailtriage.pipeline.subject_tag import remove_ticket_tags

    assert remove_ticket_tags("Re: [DM-000001] Drucker [DM#7]") == "Re: Drucker"
    assert remove_ticket_tags("[XY-12] Drucker [dm-3]", "DM") == "[XY-12] Drucker"
    assert remove_ticket_tags("Drucker", "DM") == "Drucker"


def test_the_acknowledgement_subject_loses_prefixes_and_our_tag_anywhere() -> None:
    from mailtriage.outbound.ack import strip_reference

    assert strip_reference("AW: AW: [DM-000007] Drucker", "DM") == "Drucker"
    assert strip_reference("Drucker [DM-000001]", "DM") == "Drucker"  # no second tag
    assert strip_reference("[XY-12] keep", "DM") == "[XY-12] keep"
