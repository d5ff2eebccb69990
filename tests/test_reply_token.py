"""Signed reply tokens: every way to reuse or forge one is refused."""

from __future__ import annotations

import re

import pytest

from mailtriage.pipeline.reply_token import (
    AGENT,
    REPLY,
    TOKEN_LENGTH,
    MessageIdRef,
    ReplyRef,
    make_token,
    parse_message_id,
    parse_reply_address,
    reply_address,
    token_message_id,
    verify_token,
)

SECRET = b"0123456789abcdef-test-secret"
SUPPORT = "support@dataandmore.com"
OWN = ("mailtriage.dataandmore.com",)
TOKEN = make_token(SECRET, 123, "kunde@firma.de", "reply")
FLIPPED = TOKEN[:-1] + ("b" if TOKEN[-1] != "b" else "c")  # last character changed


def test_token_shape():
    assert re.fullmatch(r"[a-z2-7]{16}", TOKEN)
    assert len(TOKEN) == TOKEN_LENGTH
    # Deterministic: the same inputs give the same token (resends reuse it).
    assert make_token(SECRET, 123, "kunde@firma.de", "reply") == TOKEN
    # The recipient is compared lower-cased and stripped.
    assert make_token(SECRET, 123, " Kunde@FIRMA.de ", "reply") == TOKEN


@pytest.mark.parametrize(
    ("secret", "token", "ticket", "recipient", "purpose", "ok"),
    [
        (SECRET, TOKEN, 123, "kunde@firma.de", "reply", True),
        (SECRET, TOKEN.upper(), 123, "kunde@firma.de", "reply", True),  # mailer upper-cased
        (SECRET, TOKEN, 123, "KUNDE@Firma.DE", "reply", True),
        (b"another-secret-of-another-site", TOKEN, 123, "kunde@firma.de", "reply", False),
        (SECRET, TOKEN, 124, "kunde@firma.de", "reply", False),  # other ticket
        (SECRET, TOKEN, 1123, "kunde@firma.de", "reply", False),
        (SECRET, TOKEN, 123, "fremder@firma.de", "reply", False),  # other recipient
        (SECRET, TOKEN, 123, "kunde@firma.de.evil.example", "reply", False),
        (SECRET, TOKEN, 123, "kunde@firma.de", "agent", False),  # other purpose
        (SECRET, TOKEN[:-1], 123, "kunde@firma.de", "reply", False),  # truncated
        (SECRET, TOKEN[:8], 123, "kunde@firma.de", "reply", False),
        (SECRET, TOKEN + "a", 123, "kunde@firma.de", "reply", False),  # extended
        (SECRET, TOKEN + TOKEN, 123, "kunde@firma.de", "reply", False),
        (SECRET, FLIPPED, 123, "kunde@firma.de", "reply", False),
        (SECRET, "", 123, "kunde@firma.de", "reply", False),
        (SECRET, None, 123, "kunde@firma.de", "reply", False),
        (SECRET, "a" * 16, 123, "kunde@firma.de", "reply", False),
        (SECRET, "ä" * 16, 123, "kunde@firma.de", "reply", False),  # non-ASCII garbage
        (b"", TOKEN, 123, "kunde@firma.de", "reply", False),  # no secret: nothing verifies
        (SECRET, TOKEN, 0, "kunde@firma.de", "reply", False),
        (SECRET, TOKEN, -123, "kunde@firma.de", "reply", False),
        (SECRET, TOKEN, 123, "kunde@firma.de", "REPLY", False),
    ],
)
def test_verify(secret, token, ticket, recipient, purpose, ok):
    assert verify_token(secret, token, ticket, recipient, purpose) is ok


def test_fields_cannot_be_shifted_into_each_other():
    # With naive concatenation "12" + "3@x.de" and "123" + "@x.de" would collide.
    assert make_token(SECRET, 12, "3@x.de", "reply") != make_token(SECRET, 123, "@x.de", "reply")
    assert make_token(SECRET, 1, "a@b.dex", "reply") != make_token(SECRET, 1, "a@b.de", "xreply")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((b"", 1, "a@b.de", "reply"), "empty secret"),
        ((SECRET, 0, "a@b.de", "reply"), "out of range"),
        ((SECRET, 10**9, "a@b.de", "reply"), "out of range"),
        ((SECRET, 1, "a@b.de", "re ply"), "bad purpose"),
        ((SECRET, 1, "a@b.de", "reply\0agent"), "bad purpose"),
    ],
)
def test_make_token_refuses(args, error):
    with pytest.raises(ValueError, match=error):
        make_token(*args)


def test_reply_address_round_trip():
    address = reply_address(SUPPORT, 123, TOKEN)
    assert address == f"support+dm-000123.{TOKEN}@dataandmore.com"
    assert parse_reply_address(address, SUPPORT) == ReplyRef(123, TOKEN)
    assert reply_address(SUPPORT, 123) == "support+dm-000123@dataandmore.com"
    assert reply_address(SUPPORT, 1234567, prefix="HD") == "support+hd-1234567@dataandmore.com"
    ref = parse_reply_address(address.upper(), SUPPORT)  # a mailer that upper-cases
    assert ref == ReplyRef(123, TOKEN)
    assert verify_token(SECRET, ref.token, ref.ticket_id, "kunde@firma.de", "reply")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("support+dm-000123@dataandmore.com", ReplyRef(123, None)),
        ("support+DM-000123@DataAndMore.com", ReplyRef(123, None)),
        ("<support+dm-000123@dataandmore.com>", ReplyRef(123, None)),
        (" support+dm-123@dataandmore.com ", ReplyRef(123, None)),
        (f"Support+Dm-000123.{TOKEN.upper()}@dataandmore.com", ReplyRef(123, TOKEN)),
        ("support+dm-000123.abc@dataandmore.com", ReplyRef(123, "abc")),  # verify refuses
        ("support@dataandmore.com", None),
        ("support+@dataandmore.com", None),
        ("support+dm-@dataandmore.com", None),
        ("support+dm-000000@dataandmore.com", None),
        ("support+dm-0001234567890@dataandmore.com", None),  # absurd number
        ("support+dm-000123x@dataandmore.com", None),
        ("support+dm-000123.@dataandmore.com", None),
        ("support+dm-000123.abc01@dataandmore.com", None),  # 0, 1 are not base32
        ("support+dm-000123.tok.en@dataandmore.com", None),
        ("support+hd-000123@dataandmore.com", None),  # another prefix
        ("support+printer@dataandmore.com", None),
        ("sales+dm-000123@dataandmore.com", None),  # another mailbox
        ("xsupport+dm-000123@dataandmore.com", None),
        ("support+dm-000123@dataandmore.com.evil.example", None),  # another domain
        ("support+dm-000123@evil-dataandmore.com", None),
        ("support+dm-000123@mail.dataandmore.com", None),
        ("support+dm-000123", None),
        ("", None),
        ("@", None),
        ("support+dm-000123@dataandmore.com@evil.example", None),
    ],
)
def test_parse_reply_address(address, expected):
    assert parse_reply_address(address, SUPPORT) == expected


def test_parse_reply_address_other_prefix():
    assert parse_reply_address("support+hd-000007@dataandmore.com", SUPPORT, "HD") == (7, None)
    assert parse_reply_address("support+dm-000007@dataandmore.com", SUPPORT, "HD") is None


def test_message_id_round_trip():
    mid = token_message_id(123, "ack", 0, TOKEN, "MailTriage.DataAndMore.com")
    assert mid == f"dm-000123.ack.0.{TOKEN}@mailtriage.dataandmore.com"
    assert parse_message_id(mid, OWN) == MessageIdRef(123, "ack", 0, TOKEN)
    assert parse_message_id(f"<{mid.upper()}>", OWN) == MessageIdRef(123, "ack", 0, TOKEN)
    mid = token_message_id(45, "agent_notice", 3, TOKEN, OWN[0])
    assert parse_message_id(mid, OWN) == MessageIdRef(45, "agent_notice", 3, TOKEN)


@pytest.mark.parametrize(
    "value",
    [
        f"dm-000123.ack.0.{TOKEN}@dataandmore.com",  # not our Message-ID domain
        f"dm-000123.ack.0.{TOKEN}@mailtriage.dataandmore.com.evil.example",
        f"dm-000123.ack.0.{TOKEN}@evil.example",
        f"dm-000123.ack.0.{TOKEN[:-1]}@mailtriage.dataandmore.com",  # truncated
        f"dm-000123.ack.0.{TOKEN}a@mailtriage.dataandmore.com",  # extended
        "dm-000123.ack.0.0123456789ab@mailtriage.dataandmore.com",  # older hex form
        f"hd-000123.ack.0.{TOKEN}@mailtriage.dataandmore.com",
        f"dm-000000.ack.0.{TOKEN}@mailtriage.dataandmore.com",
        f"dm-000123.ack.x.{TOKEN}@mailtriage.dataandmore.com",
        f"dm-000123..0.{TOKEN}@mailtriage.dataandmore.com",
        f"dm-000123.ack.0.{TOKEN}",
        "CAKx=abc@mail.gmail.com",
        "",
    ],
)
def test_parse_message_id_refuses(value):
    assert parse_message_id(value, OWN) is None


@pytest.mark.parametrize(
    "args",
    [(123, "a.b", 0), (123, "", 0), (123, "ack", -1), (123, "ACK", 0)],
)
def test_token_message_id_refuses_bad_parts(args):
    with pytest.raises(ValueError):
        token_message_id(*args, TOKEN, OWN[0])


def test_reply_address_refuses_non_address():
    with pytest.raises(ValueError):
        reply_address("support", 1)


def test_a_customer_token_does_not_authenticate_an_agent():
    # An agent Cc'd on a customer mail holds the customer's reply token for their own
    # address only if we sent it to them as an agent: purposes never cross.
    token = make_token(SECRET, 7, "anna@dataandmore.com", REPLY)
    assert verify_token(SECRET, token, 7, "anna@dataandmore.com", REPLY)
    assert not verify_token(SECRET, token, 7, "anna@dataandmore.com", AGENT)


def test_message_id_steps_of_database_ids_parse() -> None:
    """Outbox steps are database ids (a relayed reply: the article id; a notice: article
    id * 100 + agent index), so they grow past six digits."""
    token = make_token(SECRET, 123, "anna@dataandmore.com", "agent")
    for step in (0, 999_999, 1_234_567_801, 2_147_483_647):
        mid = token_message_id(123, "notice", step, token, "mailtriage.dataandmore.com")
        ref = parse_message_id(mid, ["mailtriage.dataandmore.com"])
        assert ref is not None and ref.step == step and ref.token == token
