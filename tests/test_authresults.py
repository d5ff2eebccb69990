"""Authentication-Results: parsing, the topmost-trusted-header rule, and every way a
stranger could pose as an agent."""

from __future__ import annotations

import time

import pytest

from mailtriage.pipeline.authresults import (
    AuthResults,
    MethodResult,
    agent_authenticated,
    aligned,
    parse_authentication_results,
)

TRUSTED = ("mx.dataandmore.com",)
AGENT = "anna@dataandmore.com"
OURS = "mx.dataandmore.com"


def ar(results: str, authserv: str = OURS) -> str:
    return f"{authserv}; {results}"


@pytest.mark.parametrize(
    ("headers", "ok", "reason"),
    [
        # DKIM
        ([ar("dkim=pass header.d=dataandmore.com")], True, "dkim=pass for dataandmore.com"),
        ([ar("dkim=pass header.d=mail.dataandmore.com")], True, "dkim=pass"),
        ([ar("dkim=pass header.i=@dataandmore.com")], True, "dkim=pass"),
        ([ar("dkim=pass header.d=DataAndMore.COM.")], True, "dkim=pass"),
        ([ar("dkim=fail header.d=dataandmore.com")], False, "dkim=fail dataandmore.com"),
        ([ar("dkim=neutral header.d=dataandmore.com")], False, "no aligned"),
        ([ar("dkim=permerror header.d=dataandmore.com")], False, "no aligned"),
        ([ar("dkim=pass")], False, "dkim=pass (no domain)"),
        # SPF
        ([ar("spf=pass smtp.mailfrom=anna@dataandmore.com")], True, "spf=pass"),
        ([ar("spf=pass smtp.mailfrom=bounces@mail.dataandmore.com")], True, "spf=pass"),
        ([ar("spf=pass smtp.mailfrom=dataandmore.com")], True, "spf=pass"),
        ([ar("spf=softfail smtp.mailfrom=anna@dataandmore.com")], False, "spf=softfail"),
        ([ar("spf=fail smtp.mailfrom=anna@dataandmore.com")], False, "spf=fail"),
        ([ar("spf=neutral smtp.mailfrom=anna@dataandmore.com")], False, "no aligned"),
        ([ar("spf=pass smtp.helo=mail.dataandmore.com")], False, "spf=pass (no domain)"),
        # DMARC alone is not one of the two we accept
        ([ar("dmarc=pass header.from=dataandmore.com")], False, "no dkim or spf result"),
        # Wrong and lookalike domains
        ([ar("dkim=pass header.d=evil.example")], False, "no aligned"),
        ([ar("dkim=pass header.d=dataandmore.com.evil.example")], False, "no aligned"),
        ([ar("dkim=pass header.d=evil-dataandmore.com")], False, "no aligned"),
        ([ar("dkim=pass header.d=dataandmore.co")], False, "no aligned"),
        ([ar("dkim=pass header.d=com")], False, "no aligned"),
        ([ar("spf=pass smtp.mailfrom=x@dataandmore.com.evil.example")], False, "no aligned"),
        ([ar("spf=pass smtp.mailfrom=dataandmore.com@evil.example")], False, "no aligned"),
        ([ar("dkim=pass header.d=xn--dataandmre-xyz.com")], False, "no aligned"),
        # Several results in one header: any aligned pass is enough, a pass elsewhere is not
        (
            [ar("spf=fail smtp.mailfrom=x@evil.example; dkim=pass header.d=dataandmore.com")],
            True,
            "dkim=pass",
        ),
        (
            [ar("dkim=pass header.d=evil.example; dkim=fail header.d=dataandmore.com")],
            False,
            "dkim=pass evil.example, dkim=fail dataandmore.com",
        ),
        # Untrusted, missing, unreadable
        ([ar("dkim=pass header.d=dataandmore.com", "mx.evil.example")], False, "not trusted"),
        ([ar("dkim=pass header.d=dataandmore.com", f"{OURS}.evil")], False, "not trusted"),
        ([], False, "no Authentication-Results header"),
        (["dkim=pass header.d=dataandmore.com"], False, "unreadable"),
        ([ar("dkim=pass header.d=dataandmore.com (unclosed")], False, "unreadable"),
        ([ar('dkim=pass header.d="dataandmore.com')], False, "unreadable"),
        ([ar("none")], False, "no dkim or spf result"),
        # Exchange Online writes no authserv-id: never trusted
        (
            ["spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=dataandmore.com; "
             "dkim=pass (signature was verified) header.d=dataandmore.com"],
            False,
            "unreadable",
        ),
    ],
)  # fmt: skip
def test_agent_authenticated(headers, ok, reason):
    result, why = agent_authenticated(headers, TRUSTED, AGENT)
    assert result is ok, why
    assert reason in why


def test_forged_header_below_ours_does_not_count():
    # The stranger wrote a header claiming our id; our server added its own above it.
    forged = ar("dkim=pass header.d=dataandmore.com")
    real = ar("dkim=none; spf=softfail smtp.mailfrom=mallory@evil.example")
    assert agent_authenticated([real, forged], TRUSTED, AGENT)[0] is False
    # Even when our server said nothing about DKIM at all.
    real = ar("spf=none smtp.mailfrom=mallory@evil.example")
    assert agent_authenticated([real, forged], TRUSTED, AGENT)[0] is False


def test_forged_header_above_ours_does_not_count():
    # A header above ours with another id (a hop after our border, or a forgery that
    # somehow got there): the topmost is not trusted, so nothing counts.
    forged = ar("dkim=pass header.d=dataandmore.com", "mx.evil.example")
    real = ar("dkim=pass header.d=dataandmore.com")
    assert agent_authenticated([forged, real], TRUSTED, AGENT) == (
        False,
        "topmost Authentication-Results is from 'mx.evil.example', not trusted",
    )


def test_real_header_on_top_counts_whatever_is_below():
    real = ar("dkim=pass header.d=dataandmore.com")
    forged = ar("dkim=fail header.d=dataandmore.com")
    assert agent_authenticated([real, forged], TRUSTED, AGENT)[0] is True


def test_several_trusted_ids_and_case():
    trusted = ("MX1.dataandmore.com", " mx2.dataandmore.com ")
    headers = [ar("dkim=pass header.d=dataandmore.com", "mx2.DataAndMore.com")]
    assert agent_authenticated(headers, trusted, AGENT)[0] is True
    assert agent_authenticated(headers, (), AGENT) == (
        False,
        "no trusted authserv-id configured (security.authserv_ids)",
    )
    assert agent_authenticated(headers, ("",), AGENT)[0] is False


@pytest.mark.parametrize("agent", ["", "anna", "anna@", "Anna <anna@ex ample.com>"])
def test_agent_address_without_domain(agent):
    headers = [ar("dkim=pass header.d=dataandmore.com")]
    assert agent_authenticated(headers, TRUSTED, agent)[0] is False


def test_agent_on_a_subdomain_and_agent_in_angle_brackets():
    headers = [ar("dkim=pass header.d=dataandmore.com")]
    assert agent_authenticated(headers, TRUSTED, "bo@support.dataandmore.com")[0] is True
    assert agent_authenticated(headers, TRUSTED, "<Anna@DataAndMore.com>")[0] is True


@pytest.mark.parametrize(
    "header",
    [
        # A pass hidden in a comment is no result.
        "mx.dataandmore.com; dkim=fail (dkim=pass header.d=dataandmore.com) header.d=x.example",
        "mx.dataandmore.com; dkim=fail (; dkim=pass header.d=dataandmore.com) header.d=x.example",
        "mx.dataandmore.com; dkim=fail (nested (; dkim=pass header.d=dataandmore.com)) "
        "header.d=x.example",
        r"mx.dataandmore.com; dkim=fail (esc \); dkim=pass header.d=dataandmore.com) "
        "header.d=x.example",
        # A ";" inside a quoted string does not start a result.
        'mx.dataandmore.com; dkim=fail header.d="x.example; dkim=pass header.d=dataandmore.com"',
        'mx.dataandmore.com; dkim=fail reason="; dkim=pass header.d=dataandmore.com"',
        # A comment that hides our id: the real id is the one outside.
        "(mx.dataandmore.com) mx.evil.example; dkim=pass header.d=dataandmore.com",
        # Garbage after the result makes the result unreadable (dropped, not guessed).
        "mx.dataandmore.com; dkim=pass header.d=dataandmore.com !!garbage",
    ],
)
def test_hiding_a_pass_in_comments_or_quotes_fails(header):
    assert agent_authenticated([header], TRUSTED, AGENT)[0] is False


def test_parse_full_header():
    header = (
        "mx.dataandmore.com 1;\r\n"
        " dkim=pass (2048-bit key; unprotected) header.d=dataandmore.com\r\n"
        '  header.i=@dataandmore.com header.s="sel 1" header.b=AbCd;\r\n'
        " spf = pass (mx: domain of a@dataandmore.com designates 192.0.2.1 as permitted)"
        " smtp.mailfrom=a@dataandmore.com smtp.helo=mail.dataandmore.com;\r\n"
        " dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=dataandmore.com action=none;\r\n"
        ' auth/1=pass reason="a \\"quoted\\" reason" smtp.auth=anna@dataandmore.com;'
    )
    assert parse_authentication_results(header) == AuthResults(
        "mx.dataandmore.com",
        (
            MethodResult(
                "dkim",
                "pass",
                "",
                (
                    ("header.d", "dataandmore.com"),
                    ("header.i", "@dataandmore.com"),
                    ("header.s", "sel 1"),
                    ("header.b", "AbCd"),
                ),
            ),
            MethodResult(
                "spf",
                "pass",
                "",
                (("smtp.mailfrom", "a@dataandmore.com"), ("smtp.helo", "mail.dataandmore.com")),
            ),
            MethodResult("dmarc", "pass", "", (("header.from", "dataandmore.com"),)),
            MethodResult("auth", "pass", 'a "quoted" reason', (("smtp.auth", AGENT),)),
        ),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("mx.example.com; none", AuthResults("mx.example.com", ())),
        ('"mx.example.com"; dkim=pass',
         AuthResults("mx.example.com", (MethodResult("dkim", "pass"),))),
        ("MX.Example.COM; DKIM=PASS Header.D=x.example", AuthResults(
            "mx.example.com", (MethodResult("dkim", "pass", "", (("header.d", "x.example"),)),))),
        ("", None),
        ("; dkim=pass", None),
        ("mx.example.com)", None),
        ("mx.example.com extra words; dkim=pass", None),
    ],
)  # fmt: skip
def test_parse_edge_cases(header, expected):
    assert parse_authentication_results(header) == expected


@pytest.mark.parametrize(
    ("a", "b", "ok"),
    [
        ("dataandmore.com", "dataandmore.com", True),
        ("mail.dataandmore.com", "dataandmore.com", True),
        ("dataandmore.com", "support.dataandmore.com", True),
        ("a.b.dataandmore.com", "dataandmore.com", True),
        ("eu.dataandmore.com", "us.dataandmore.com", False),  # siblings: fail closed
        ("dataandmore.com.evil.example", "dataandmore.com", False),
        ("evil-dataandmore.com", "dataandmore.com", False),
        ("com", "dataandmore.com", False),
        ("dataandmore.com", "com", False),
        ("", "dataandmore.com", False),
        (None, "dataandmore.com", False),
        ("data andmore.com", "dataandmore.com", False),
        ("bücher.example", "xn--bcher-kva.example", True),  # IDNA
    ],
)
def test_aligned(a, b, ok):
    assert aligned(a, b) is ok


@pytest.mark.parametrize(
    "header",
    [
        OURS + "; dkim=pass" + " header.d=x.example" * 20_000,
        OURS + "; " + "a" * 200_000,
        OURS + "; dkim=pass header.d=" + '"' + "\\a" * 100_000 + '"',
        OURS + "; " + "(" * 100_000 + ")" * 100_000 + "dkim=pass header.d=dataandmore.com",
        OURS + ";" * 100_000,
    ],
)
def test_hostile_long_headers_are_fast(header):
    started = time.monotonic()
    agent_authenticated([header], TRUSTED, AGENT)
    assert time.monotonic() - started < 2
