"""Where a regular expression's matches can start: the literal prefixes every match
begins with, read from the stdlib's own parse of the pattern.

CPython's ``re`` tries a long alternation (``a ...|b ...|\\bc ...``) at every position
of a text. Knowing that each match starts with one of a few literal prefixes, a caller
can find those with ``str.find`` (or an index of the text's words) and try the
expression only there, which gives the very matches ``search``/``finditer`` give.
Pure: no I/O.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["PREFIX_CHARS", "LeftmostSearch", "Unbounded", "finditer_at", "prefixes"]

PREFIX_CHARS = 4  # characters of a prefix at most
_MAX_PREFIXES = 4000  # more than this: not worth it, scan as usual
_MAX_STEPS = 200_000  # steps of the walk over the parsed pattern

_STOP = (None, None)


class Unbounded(Exception):
    """A pattern some match of which may start with anything (or with too many things)."""


_ASCII = [chr(i) for i in range(128)]


def prefixes(source: str, flags: int = 0, *, ascii_text: bool = False) -> set[str]:
    """Every string (at most PREFIX_CHARS long, never empty) one of which each match of
    the regular expression ``source`` (compiled with ``flags``) starts with.

    ``ascii_text``: the prefixes of the matches in ASCII text only, where a class such
    as ``\\d`` or ``[a-f\\w]`` stands for the few ASCII characters it matches (``\\d``
    matches other digits, too, which ASCII text does not have).

    Raises Unbounded when there is no such finite set (a match may start with a class
    such as ``\\d`` or ``.``, or case-insensitively), or it is too large. Read from the
    stdlib's own parse of the pattern (``re._parser``), so it cannot disagree with the
    compiled expression: only consumed literal characters count; zero-width assertions
    (``\\b``, lookarounds) are passed over, as they only narrow the matches."""
    try:  # the stdlib's (private) parser; a Python without it gets plain re searches
        parser: Any = importlib.import_module("re._parser")
        c: Any = importlib.import_module("re._constants")
        repeats = {c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)}
        zero_width = {c.AT, c.ASSERT, c.ASSERT_NOT}
        literal, in_, subpattern, branch = c.LITERAL, c.IN, c.SUBPATTERN, c.BRANCH
        categories = {  # what str patterns' classes match among ASCII characters
            c.CATEGORY_DIGIT: str.isdecimal,
            c.CATEGORY_WORD: lambda ch: ch.isalnum() or ch == "_",
            c.CATEGORY_SPACE: str.isspace,
        }
        range_, category = c.RANGE, c.CATEGORY
    except (ImportError, AttributeError) as exc:
        raise Unbounded from exc

    def ascii_class(items: list[Any]) -> list[str] | None:
        """The ASCII characters a class matches; None when that is not known here."""
        chars: set[str] = set()
        for op, av in items:
            if op is literal:
                chars.add(chr(av))
            elif op is range_:
                chars.update(ch for ch in _ASCII if av[0] <= ord(ch) <= av[1])
            elif op is category and av in categories:
                chars.update(filter(categories[av], _ASCII))
            else:  # NEGATE, a negated category, ...
                return None
        return sorted(ch for ch in chars if ch.isascii())

    out: set[str] = set()
    steps = 0

    def walk(items: list[Any], acc: str) -> None:
        nonlocal steps
        for i, (op, av) in enumerate(items):
            steps += 1
            if steps > _MAX_STEPS or len(out) > _MAX_PREFIXES:
                raise Unbounded
            if len(acc) >= PREFIX_CHARS:
                break
            rest = items[i + 1 :]
            if op is literal:
                acc += chr(av)
            elif op in zero_width:
                continue
            elif op is in_ and av and all(o is literal for o, _ in av):
                for _, ch in av:
                    walk(rest, acc + chr(ch))
                return
            elif op is in_ and ascii_text and (chars := ascii_class(av)) is not None:
                for ch in chars:
                    walk(rest, acc + ch)
                return
            elif op is subpattern and not av[1] and not av[2]:
                walk(list(av[3]) + rest, acc)
                return
            elif op is branch:
                for alt in av[1]:
                    walk(list(alt) + rest, acc)
                return
            elif op in repeats:
                low, _, sub = av
                if low == 0:
                    walk(rest, acc)
                walk([*sub, _STOP], acc)  # one repetition, then no further
                return
            else:  # a class, any character, a flag group, a back-reference, _STOP
                break
        if not acc:
            raise Unbounded
        out.add(acc[:PREFIX_CHARS])

    try:
        parsed = parser.parse(source, flags)
    except (re.error, RecursionError) as exc:
        raise Unbounded from exc
    state = getattr(getattr(parsed, "state", None), "flags", None)  # with inline flags
    if not isinstance(state, int) or state & (re.IGNORECASE | re.LOCALE):
        raise Unbounded
    walk(list(parsed), "")
    return out


class LeftmostSearch:
    """A compiled expression whose ``search(text)`` tries only the positions where one
    of its prefixes occurs, left to right: the same match as ``regex.search(text)``
    (the leftmost position where it matches), found with a few ``str.find`` calls
    instead of the regex engine's walk over every position. Other methods and
    expressions without a finite prefix set are the plain ``re.Pattern``'s."""

    def __init__(self, regex: re.Pattern[str]) -> None:
        self.regex = regex

    @functools.cached_property
    def prefixes(self) -> tuple[str, ...] | None:
        """Worked out on first use (not at import: start-up time)."""
        try:
            return tuple(sorted(prefixes(self.regex.pattern, self.regex.flags)))
        except Unbounded:
            return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.regex, name)

    def search(self, text: str) -> re.Match[str] | None:
        starts = self.prefixes
        if starts is None:
            return self.regex.search(text)
        positions = [pos for prefix in starts for pos in occurrences(text, prefix)]
        if not positions:
            return None
        match = self.regex.match
        for pos in sorted(set(positions)):
            found = match(text, pos)
            if found is not None:
                return found
        return None


def occurrences(text: str, literal: str) -> list[int]:
    """Every position where ``literal`` starts in ``text`` (overlapping ones too)."""
    found: list[int] = []
    pos = text.find(literal)
    while pos >= 0:
        found.append(pos)
        pos = text.find(literal, pos + 1)
    return found


def finditer_at(
    regex: re.Pattern[str], text: str, positions: Iterable[int]
) -> Iterator[re.Match[str]]:
    """What ``regex.finditer(text)`` yields, for an expression that never matches empty
    text, given (in ascending order, each once) every position a match can start at:
    the leftmost match from where the last one ended is the first of those positions
    where the expression matches."""
    end = 0
    for pos in positions:
        if pos < end:
            continue
        match = regex.match(text, pos)
        if match is not None:
            end = match.end()
            yield match
