"""Mutated real messages: the parser and the loop guard are total.

Every mutation of a corpus message either parses (what could not be read is a defect)
or raises ParseError, which the worker quarantines at once. Any other exception would be
retried as if it were transient. No text that we store carries NUL or other control
characters (PostgreSQL rejects NUL in text).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailtriage.pipeline.loops import detect_loop
from mailtriage.pipeline.parse import ParsedMessage, ParseError, parse_message

CORPUS = Path(__file__).parent / "corpus"
SAMPLE = 120  # corpus files per run (seeded: the same files and mutations every time)
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, separator, body) of a raw message."""
    match = re.search(rb"\r?\n\r?\n", raw)
    if not match:
        return raw, b"", b""
    return raw[: match.start()], raw[match.start() : match.end()], raw[match.end() :]


def broken_encoded_words(raw: bytes, rng: random.Random) -> bytes:
    head, sep, body = _split(raw)
    head = re.sub(rb"(?im)^subject:.*$", b"Subject: =?utf-8?B?####?= =?utf-8?Q?=FF=?=", head)
    word = rng.choice([b"=?utf-8?B?####?=", b"=?x-unknown-123?B?w6Q=?=", b"=?utf-8?B?w6"])
    head = re.sub(rb"(?im)^(from|to|cc):", lambda m: m.group(0) + b" " + word + b" ", head)
    return head + sep + body


def nul_bytes(raw: bytes, rng: random.Random) -> bytes:
    head, sep, body = _split(raw)
    head = re.sub(
        rb"(?im)^(subject|from|message-id|date):[ \t]*", lambda m: m.group(0) + b"\x00\x01", head
    )
    head = re.sub(rb'(?i)(file)?name="?', lambda m: m.group(0) + b"a\x00\x1b", head)
    body = re.sub(rb'(?i)(file)?name="?', lambda m: m.group(0) + b"n\x00", body)
    out = bytearray(body)
    for _ in range(8):
        if out:
            out.insert(rng.randrange(len(out)), 0)
    return head + sep + bytes(out)


def unknown_charsets(raw: bytes, rng: random.Random) -> bytes:
    name = rng.choice([b"x-unknown-123", b"base64", b"utf-99", b"\x00garbage"])
    raw = re.sub(rb'(?i)charset="?[^";\s]+"?', b'charset="' + name + b'"', raw)
    head, sep, body = _split(raw)
    if b"charset" not in head.lower():
        head += b"\r\nContent-Type: text/plain; charset=" + name
    return head + sep + body + b"\r\n\xe4\xf6\xfc\xff\xfe"


def truncated(raw: bytes, rng: random.Random) -> bytes:
    return raw[: rng.randrange(1, max(2, len(raw)))]


def unbalanced_boundaries(raw: bytes, rng: random.Random) -> bytes:
    raw = re.sub(rb"(?m)^--([^\r\n]+)--[ \t]*\r?$", b"", raw)  # no closing boundaries
    lines = raw.split(b"\n")
    starts = [i for i, line in enumerate(lines) if line.startswith(b"--")]
    for i in rng.sample(starts, min(2, len(starts))):
        lines[i] = lines[i][:-3] if len(lines[i]) > 5 else lines[i] + b"x"
    return b"\n".join(lines)


def deep_nesting(raw: bytes, rng: random.Random) -> bytes:
    depth = rng.randrange(30, 120)
    head, _sep, body = _split(raw)
    inner = body
    for level in range(depth):
        b = f"n{level}".encode()
        inner = (
            (
                b"--"
                + b
                + b"\r\nContent-Type: multipart/mixed; boundary=n"
                + str(level + 1).encode()
                if level + 1 < depth
                else b"--" + b + b"\r\nContent-Type: text/plain"
            )
            + b"\r\n\r\n"
            + inner
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
    head = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: 1", head)
    return head + b"\r\nContent-Type: multipart/mixed; boundary=n0\r\n\r\n" + inner


MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    broken_encoded_words,
    nul_bytes,
    unknown_charsets,
    truncated,
    unbalanced_boundaries,
    deep_nesting,
]


def _strings(value: object) -> Iterator[str]:
    """Every str inside a parsed value (dataclasses, tuples)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _strings(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name))


def _cases() -> list[tuple[str, str]]:
    files = sorted(CORPUS.rglob("*.eml"))
    rng = random.Random(20261206)
    chosen = rng.sample(files, SAMPLE)
    return [(str(f.relative_to(CORPUS)), m.__name__) for f in chosen for m in MUTATIONS]


def check(raw: bytes) -> ParsedMessage | None:
    try:
        parsed = parse_message(raw)
    except ParseError:
        return None
    verdict = detect_loop(parsed, own_domains=("dataandmore.com",), envelope_sender=None)
    assert verdict.kind in {"human", "auto_reply", "out_of_office", "bounce", "list", "own"}
    bad = [s[:80] for s in _strings(parsed) if _CONTROLS.search(s)]
    assert bad == []
    return parsed


def test_mutated_corpus_parses_or_raises_parse_error() -> None:
    failures: list[str] = []
    parsed = 0
    by_name = {m.__name__: m for m in MUTATIONS}
    for index, (relative, name) in enumerate(_cases()):
        raw = (CORPUS / relative).read_bytes()
        mutated = by_name[name](raw, random.Random(index))
        try:
            parsed += check(mutated) is not None
        except Exception as exc:  # the point of the test: nothing else may escape
            failures.append(f"{relative} [{name}]: {type(exc).__name__}: {exc}"[:300])
    assert failures == []
    assert parsed > SAMPLE * len(MUTATIONS) * 0.8  # most are read, not quarantined


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: =?utf-8?B?####?=\r\nFrom: =?utf-8?B?w6?= <a@b.example>\r\n\r\nhi\r\n",
        b"Subject: a\x00b\r\nFrom: N\x00ame <a@b.example>\r\n\r\nbo\x00dy\r\n",
        b'Subject: x\r\nContent-Type: text/plain; charset="x-unknown-123"\r\n\r\n\xe4\r\n',
        b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b'Content-Type: application/pdf; name="a\x00.pdf"\r\n\r\n%PDF\x00\r\n',
    ],
)
def test_known_crashers_are_read_with_clean_text(raw: bytes) -> None:
    parsed = check(raw)
    assert parsed is not None
