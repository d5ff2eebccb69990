"""The rules' scanner finds exactly what running every group's expression over the whole
text finds (it only tries the positions a match can start at)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from mailtriage.pipeline.classify import fold, input_from_text
from mailtriage.pipeline.classify.patterns import Scanner, SignalGroup, compile_terms
from mailtriage.pipeline.classify.scoring import _zone_texts
from mailtriage.pipeline.parse import ParseError, parse_message
from mailtriage.pipeline.regex_prefix import LeftmostSearch, Unbounded, prefixes
from mailtriage.triage.rules_file import load_rules

LABELED = Path(__file__).parent / "labeled"


def finditer_scan(scanner: Scanner, text: str) -> dict[int, tuple[str, ...]]:
    """The reference: every group's expression over the whole text."""
    found: dict[int, tuple[str, ...]] = {}
    for i, group in enumerate(scanner.groups):
        seen: dict[str, None] = {}
        for hit in group.regex.finditer(text):
            phrase = hit.group(0).strip().lower()
            if phrase and phrase not in seen:
                seen[phrase] = None
                if len(seen) >= group.max_hits:
                    break
        if seen:
            found[i] = tuple(seen)
    return found


def group(terms: list[str], index: int = 0, max_hits: int = 3) -> SignalGroup:
    return SignalGroup(
        name=f"g{index}",
        weight=1.0,
        regex=re.compile(compile_terms(terms)),
        max_hits=max_hits,
        terms=tuple(terms),
        index=index,
    )


def test_default_rules_on_the_labelled_mails_and_tricky_text():
    rules = load_rules()
    # the prefix index covers nearly every group: a pass below compares the index, not
    # a whole-text scan with itself
    assert len(rules.scanner._whole) <= 2
    texts = [
        "",
        "a",
        "passwort",
        "benutzerpasswort-aenderung, passwortaenderung! 500 users affected; error 503",
        "nullpointerexception: at com.example.foo(bar.java:12) - 1. a 2. b 3. c",
        "ıstanbul ſtraße kelvin k \u212a",  # characters re folds under IGNORECASE
    ]
    for path in sorted(LABELED.rglob("*.eml")):
        msg = parse_message(path.read_bytes())
        inp = input_from_text(msg.subject, msg.text, (), msg.sender)
        texts += [fold(t) for t in _zone_texts(inp).values() if t.strip()]
    assert len(texts) > 500
    for text in texts:
        assert rules.scanner.scan(text) == finditer_scan(rules.scanner, text), text[:200]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("abcdef", {"abcd"}),
        ("(ab|vor|zum)[\\s\\-]+x", {"ab", "vor", "zum"}),
        ("[ab]c(?:de|f)g", {"acde", "bcde", "acfg", "bcfg"}),
        ("x?yz", {"x", "yz"}),  # one repetition, then nothing more is known
        ("e-?mail", {"emai", "e-"}),
        ("(?<!\\w)(?:ab\\b|c)", {"ab", "c"}),
        ("a+bc", {"a"}),
    ],
)
def testprefixes(source, expected):
    assert prefixes(source) == expected


@pytest.mark.parametrize("source", ["\\d+ users", ".{0,3}x", "\\w(error)", "x?", "(?i:abc)"])
def test_prefixes_refuse_what_may_start_anywhere(source):
    with pytest.raises(Unbounded):
        prefixes(source)


def test_random_patterns_and_texts():
    """Random rules-file patterns (word starts, anywhere, optional parts, classes, groups
    that must be scanned whole) against random text: the same phrases as finditer."""
    rng = random.Random(10)
    atoms = ["a", "b", "ab", "ba", "c", "-", " ", "(a|bc)", "[ab]", "a?", "b*", "(ab)+", "\\w"]
    atoms += ["\\d", "\\d+", "[a-c1]", "[\\w-]", "\\s", "[^a]", "."]
    for _ in range(300):
        groups = []
        for index in range(rng.randint(1, 4)):
            terms = []
            for _ in range(rng.randint(1, 4)):
                body = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 4))).strip()
                if not body or re.fullmatch(r"[\s-]*", body):
                    body = "ab"
                terms.append(("*" if rng.random() < 0.3 else "") + body)
            regex = re.compile(compile_terms(terms))
            if regex.search("") or any(regex.finditer(" ")):
                continue  # the rules refuse patterns that match empty text
            groups.append(group(terms, index, max_hits=rng.randint(1, 3)))
        scanner = Scanner(groups)
        for _ in range(20):
            text = "".join(rng.choice("aabbc -\n12_\x1c") for _ in range(rng.randint(0, 40)))
            if rng.random() < 0.2:  # not ASCII: an Arabic-Indic digit, an accented letter
                text += rng.choice(["\u0663", "\u00e9", "a\u0663b"])
            assert scanner.scan(text) == finditer_scan(scanner, text), (
                [g.terms for g in groups],
                text,
            )


def test_loop_guard_searches_find_what_re_search_finds():
    """The loop guard's LeftmostSearch patterns on the folded text of every corpus mail
    (bounces, auto-replies, lists, people) and random text: the same match, or none."""
    from mailtriage.pipeline.loops import patterns as loop_patterns
    from mailtriage.pipeline.loops.mail import Mail

    searches = [
        v for v in vars(loop_patterns).values() if isinstance(v, LeftmostSearch) and v.prefixes
    ]
    assert len(searches) >= 8
    corpus = Path(__file__).parent / "corpus"
    texts = []
    for path in sorted(corpus.rglob("*.eml"))[::3]:
        try:
            mail = Mail(parse_message(path.read_bytes()), None)
        except ParseError:
            continue
        texts += [mail.body, mail.fresh, mail.subject]
    rng = random.Random(7)
    words = ["i", "am", "out", "of", "the", "office", "ich", "bin", "im", "urlaub"]
    words += ["could", "not", "be", "delivered", "help", "please", "ausser", "haus"]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    for search in searches:
        for text in texts:
            ours, theirs = search.search(text), search.regex.search(text)
            assert (ours and ours.span()) == (theirs and theirs.span()), (search.pattern, text)


def test_leftmost_search_falls_back_without_prefixes():
    assert LeftmostSearch(re.compile(r"\d+ users")).prefixes is None
    assert LeftmostSearch(re.compile(r"abc", re.IGNORECASE)).prefixes is None
    assert LeftmostSearch(re.compile(r"(?i)abc")).prefixes is None
    assert LeftmostSearch(re.compile(r"(?i)abc")).search("xABC").span() == (1, 4)
    verbose = LeftmostSearch(re.compile(r"a b  # a comment", re.VERBOSE))
    assert verbose.prefixes == ("ab",)
    assert verbose.search("x a b ab").span() == (6, 8)
    assert LeftmostSearch(re.compile(r"b|ab")).search("xab").span() == (1, 3)
