"""The raw-bytes helpers' fast paths give what their plain versions give."""

from __future__ import annotations

import hashlib
import random

from mailtriage.pipeline.rawmail import _end_of_text, _find_boundary, content_key

HEAD = b"From: a@kunde.example\nSubject: s\nDate: Mon, 2 Nov 2026 09:00:00 +0000\n\n"


def reference_key(raw: bytes) -> str:
    """The content key by its definition: the four headers, then the body with every
    line break as LF and no trailing white space."""
    digest = hashlib.sha256()
    for value in (b"a@kunde.example", b"s", b"Mon, 2 Nov 2026 09:00:00 +0000", b""):
        digest.update(value + b"\0")
    body = raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else raw.split(b"\r\n\r\n", 1)[1]
    digest.update(body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip())
    return digest.hexdigest()


def test_content_key_with_and_without_carriage_returns():
    rng = random.Random(3)
    for size in (0, 1, 10, 70_000, (1 << 20) + 5):
        for tail in (b"", b"\n", b" \t\n\n", b"\n" * 70_000):
            text = bytes(rng.choice(b"ab \t\nc") for _ in range(size)) + tail
            lf = HEAD + text
            crlf = lf.replace(b"\n", b"\r\n")
            assert content_key(lf) == reference_key(lf) == content_key(crlf)


def test_end_of_text():
    for data in (b"", b"   ", b"abc", b"abc \n", b"x" + b" " * 200_000, b"ab\x0b\x0c\r\n"):
        for start in range(min(len(data), 3) + 1):
            assert _end_of_text(data, start, step=7) == start + len(data[start:].rstrip())


def test_find_boundary():
    rng = random.Random(5)
    for _ in range(2000):
        data = bytes(rng.choice(b"ab-\n\r") for _ in range(rng.randint(0, 30)))
        for start in range(len(data) + 1):
            assert _find_boundary(data, start) == data.find(b"\n--", start)


def _structure(msg):
    """Everything the parser decided about a message tree."""
    out = []
    for part in msg.walk():
        payload = part.get_payload()
        out.append(
            (
                part.get_content_type(),
                part.items(),
                payload if isinstance(payload, str) else len(payload),
                part.preamble,
                part.epilogue,
                [type(d).__name__ for d in part.defects],
            )
        )
    return out


def test_our_feed_parser_splits_every_corpus_message_as_the_stdlib_does():
    """Its boundary test without a regex compile (rawmail._Boundary) finds the same
    parts, preambles, epilogues and defects as email.feedparser.BytesFeedParser."""
    from email.feedparser import BytesFeedParser as Stdlib
    from email.policy import compat32
    from pathlib import Path

    from mailtriage.pipeline.rawmail import BytesFeedParser, _Boundary

    assert BytesFeedParser is not Stdlib  # the known stdlib internals are there
    files = sorted((Path(__file__).parent / "corpus").rglob("*.eml"))
    assert len(files) > 1000
    extra = [
        b'Content-Type: multipart/mixed; boundary="a.b+c(d)?*"\n\n--a.b+c(d)?*\nx\n'
        b"--a.b+c(d)?*  \r\ny\n--a.b+c(d)?*--\t\nend",
        b'Content-Type: multipart/mixed; boundary="\\\\n"\n\n--\\n\nx\n--\\n--\n',
    ]
    boundaries = 0
    for raw in [f.read_bytes() for f in files] + extra:
        ours = BytesFeedParser(policy=compat32)
        theirs = Stdlib(policy=compat32)
        ours.feed(raw)
        theirs.feed(raw)
        assert _structure(ours.close()) == _structure(theirs.close())
        boundaries += raw.count(b"boundary=")
    assert boundaries > 300
    assert _Boundary("--x").match("--x--\n").group("end") == "--"
