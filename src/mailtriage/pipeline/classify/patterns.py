"""Rule patterns: from the rules file's terms to compiled regular expressions, and one
scan of a text for every signal group at once.

Pattern syntax (the rules file's ``de``, ``en`` and ``any`` lists):

* a pattern is a regular expression, matched case-insensitively at the start of a word,
  so ``passwort`` also finds "Passwortänderung"; a leading ``*`` lets it match inside a
  word ("*passwort" finds "Benutzerpasswort"); a pattern that is one word of at most three
  letters/digits ("api", "nat") must match a whole word;
* a space stands for any run of spaces or hyphens ("sync client" finds "Sync-Client");
* umlauts and ß are folded (ä = ae, ß = ss) in both text and pattern
  (:func:`mailtriage.pipeline.classify.fold.fold`).

:class:`Scanner` finds what every group of a rules file matches in a text; scoring
reads its result rather than running expressions itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailtriage.pipeline.classify.fold import FOLD_TABLE
from mailtriage.pipeline.regex_prefix import PREFIX_CHARS, Unbounded, finditer_at, prefixes

__all__ = ["Scanner", "SignalGroup", "compile_terms"]


@dataclass(frozen=True)
class SignalGroup:
    name: str
    weight: float
    regex: re.Pattern[str]
    max_hits: int = 3
    cap: float | None = None  # upper bound of the group's total over all parts
    terms: tuple[str, ...] = ()  # the patterns as written in the rules file
    index: int = 0  # position in Rules.scanner.groups


@functools.lru_cache(maxsize=8192)
def normalise_pattern(pattern: str) -> str:
    """Fold umlauts, lower-case literal letters (not escapes such as ``\\S``) and turn each
    space outside a ``[...]`` class into ``[\\s\\-]+``."""
    out: list[str] = []
    in_class = False
    escaped = False
    for ch in pattern.translate(FOLD_TABLE):
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif in_class:
            out.append("\\s" if ch == " " else ch.lower())
            in_class = ch != "]"
        elif ch == "[":
            out.append(ch)
            in_class = True
        elif ch == " ":
            out.append(r"[\s\-]+")
        else:
            out.append(ch.lower())
    return "".join(out)


def _has_top_level_bar(pattern: str) -> bool:
    depth = 0
    in_class = False
    escaped = False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
    return False


def _literal_first(body: str) -> str | None:
    """The character every match of ``body`` starts with, if it is a plain literal."""
    if (
        body
        and body[0].isalnum()
        and (len(body) == 1 or body[1] not in "?*+{|")
        and not _has_top_level_bar(body)
    ):
        return body[0]
    return None


def _alternation(bodies: Sequence[str]) -> str:
    """Join pattern bodies into one alternation, bucketed by a literal first character
    so that the regex engine tries only the few alternatives that can match at a
    position. (A flat alternation of hundreds of terms made classification ~20x slower.)"""
    buckets: dict[str, list[str]] = {}
    rest: list[str] = []
    for body in bodies:
        first = _literal_first(body)
        if first is not None and len(body) > 1:
            buckets.setdefault(first, []).append(body[1:])
        else:
            rest.append(body)
    parts = [f"{re.escape(k)}(?:{'|'.join(v)})" for k, v in sorted(buckets.items())]
    parts += [f"(?:{b})" for b in rest]
    return "|".join(parts)


_SHORT_WORD = re.compile(r"[a-z0-9]{1,3}")


def _bodies(terms: Iterable[str]) -> tuple[list[str], list[str]]:
    """(patterns matched at a word start, patterns matched anywhere), normalised."""
    word_start: list[str] = []
    anywhere: list[str] = []
    for term in terms:
        body = term.strip()
        if body.startswith("*"):
            anywhere.append(normalise_pattern(body[1:]))
            continue
        norm = normalise_pattern(body)
        if _SHORT_WORD.fullmatch(norm):
            # "api", "nat", "ico": a short word must match whole, not as a prefix
            # ("natürlich", "icon")
            norm += r"\b"
        word_start.append(norm)
    return word_start, anywhere


def compile_terms(terms: Sequence[str]) -> str:
    """One regular expression (source) for a list of rules-file patterns."""
    word_start, anywhere = _bodies(terms)
    parts = []
    if word_start:
        parts.append(rf"(?<!\w)(?:{_alternation(word_start)})")
    if anywhere:
        parts.append(_alternation(anywhere))
    return "|".join(parts)


_WORD_CHAR = re.compile(r"\w")


@dataclass(frozen=True)
class _Candidates:
    """Where a group's matches can start: after a non-word character with one of
    ``word_start`` (by length), or anywhere with one of ``anywhere``."""

    word_start: tuple[tuple[int, frozenset[str]], ...]
    anywhere: tuple[str, ...]


def _body_prefixes(body: str, ascii_text: bool) -> set[str]:
    """The prefixes of one normalised pattern. Most are words: a pattern without a
    top-level "|" that starts with at least three letters or digits, the last of them
    not quantified, starts every match with them (up to PREFIX_CHARS of them); the
    rest are parsed (regex_prefix.prefixes: parsing every pattern cost a start 60 ms)."""
    letters = 0
    for ch in body[: PREFIX_CHARS + 1]:
        if not ch.isalnum():
            break
        letters += 1
    if letters >= 3 and not _has_top_level_bar(body):
        if letters > PREFIX_CHARS:
            return {body[:PREFIX_CHARS]}
        if body[letters : letters + 1] not in ("?", "*", "+", "{"):
            return {body[:letters]}
    return prefixes(body, ascii_text=ascii_text)


def _candidates(group: SignalGroup, ascii_text: bool = False) -> _Candidates | None:
    """The group's start prefixes (in ASCII text only, with ``ascii_text``), or None when
    it must be scanned as a whole."""
    if group.regex.flags & ~re.UNICODE or group.regex.pattern != compile_terms(group.terms):
        return None
    word_start, anywhere = _bodies(group.terms)
    starts: set[str] = set()
    elsewhere: set[str] = set()
    try:
        for body in word_start:
            for prefix in _body_prefixes(body, ascii_text):
                # after (?<!\w) a word character starts a run of them; anything else
                # may follow any character
                (starts if _WORD_CHAR.match(prefix) else elsewhere).add(prefix)
        for body in anywhere:
            elsewhere |= _body_prefixes(body, ascii_text)
    except (Unbounded, re.error, RecursionError):
        return None
    by_length: dict[int, set[str]] = {}
    for prefix in starts:
        by_length.setdefault(len(prefix), set()).add(prefix)
    return _Candidates(
        tuple((n, frozenset(p)) for n, p in sorted(by_length.items())), tuple(sorted(elsewhere))
    )


def _trie(words: Iterable[str]) -> str:
    """A regular expression (source) matching exactly the given literals (non-empty, all
    of one length), nested by their characters ("pass", "pasw", "ptr":
    ``p(?:as(?:s|w)|tr)``), so that the engine compares each character once instead of
    trying every literal in turn."""
    by_first: dict[str, set[str]] = {}
    for word in words:
        by_first.setdefault(word[:1], set()).add(word[1:])
    alternatives = []
    for first, rests in sorted(by_first.items()):
        rests.discard("")  # all of one length: a word ends where the others end
        alternatives.append(re.escape(first) + (_trie(rests) if rests else ""))
    return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"


def _finder(literals: Iterable[str], word_start: bool) -> re.Pattern[str]:
    """One expression whose matches start exactly where one of ``literals`` (all of one
    length) starts in a text (after a non-word character with ``word_start``). It is
    zero-width, so ``finditer`` yields overlapping occurrences, too."""
    return re.compile((r"(?<!\w)" if word_start else "") + f"(?={_trie(literals)})")


def _any_word(candidates: _Candidates) -> bool:
    """Whether a single letter is among the word-start prefixes: nearly every word is a
    candidate then, and one ``finditer`` of the group's expression costs less than trying
    it word by word."""
    return any(n == 1 and any(p.isalpha() for p in starts) for n, starts in candidates.word_start)


class _Index:
    """Where in a text the matches of a set of groups can start.

    One ``finditer`` per prefix length (word starts and anywhere apart) finds every
    occurrence of the prefixes: the regex engine walks the text in C, and Python runs
    only where a prefix is (a loop over every word start and a ``str.find`` per prefix
    cost more than the rest of the scan). The expressions are compiled on first use
    (some 15 ms; the index for text that is not ASCII is rarely used)."""

    def __init__(self, groups: Sequence[tuple[int, _Candidates]]) -> None:
        self._by_prefix: dict[str, list[int]] = {}
        self._by_anywhere: dict[str, list[int]] = {}
        for i, candidates in groups:
            for _, starts in candidates.word_start:
                for prefix in starts:
                    self._by_prefix.setdefault(prefix, []).append(i)
            for prefix in candidates.anywhere:
                self._by_anywhere.setdefault(prefix, []).append(i)

    @functools.cached_property
    def _passes(self) -> tuple[tuple[int, re.Pattern[str], dict[str, list[int]]], ...]:
        """(prefix length, its finder, prefix -> group indices) per pass."""
        passes: list[tuple[int, re.Pattern[str], dict[str, list[int]]]] = []
        for table, word_start in ((self._by_prefix, True), (self._by_anywhere, False)):
            by_length: dict[int, list[str]] = {}
            for prefix in table:
                by_length.setdefault(len(prefix), []).append(prefix)
            for n, literals in sorted(by_length.items()):
                passes.append((n, _finder(literals, word_start), table))
        return tuple(passes)

    def positions(self, text: str) -> dict[int, list[int]]:
        """Group index -> the positions in ``text`` its matches can start at (unsorted,
        possibly repeated)."""
        positions: dict[int, list[int]] = {}
        for n, finder, table in self._passes:
            at: dict[str, list[int]] = {}
            for match in finder.finditer(text):
                pos = match.start()
                prefix = text[pos : pos + n]
                if prefix in at:
                    at[prefix].append(pos)
                else:
                    at[prefix] = [pos]
            for prefix, where in at.items():
                for i in table[prefix]:
                    if i in positions:
                        positions[i] += where
                    else:
                        positions[i] = list(where)
        return positions


class Scanner:
    """Every signal group's distinct matched phrases in a text.

    Each group has its own compiled alternation (bucketed by first character, see
    :func:`compile_terms`). Running each over the whole text costs a regex pass per
    group, most of which find nothing. So the scanner first reads, from the stdlib's
    parse of each group, the prefixes (up to PREFIX_CHARS characters) every match
    starts with, finds where those prefixes are in the text (one ``finditer`` per
    prefix length, see :class:`_Index`), and
    tries a group's expression only at the positions where one of its prefixes is,
    in order and skipping what a match covered: the matches ``finditer`` would find,
    at a fraction of the cost. Groups whose matches start with a class (``\\d+ users``)
    have prefixes in ASCII text (its digits, its word characters) and are scanned whole
    in other text, and in ASCII text too when a single letter is among them (every
    word would be a candidate); a group whose matches may start with anything is always
    scanned whole. (A single alternation of all ~1,800 patterns gave the same results but was
    4-5x slower in CPython's backtracking ``re``.)
    """

    def __init__(self, groups: Sequence[SignalGroup]) -> None:
        self.groups = tuple(groups)
        # Inverted: a word-start prefix (any length) or an anywhere prefix -> the groups
        # whose matches may start with it. Two such indexes: for any text, and for ASCII
        # text (folded text nearly always is), where groups whose matches start with a
        # class (\d, \w) have prefixes, too. Groups with neither are scanned whole.
        any_text: list[tuple[int, _Candidates]] = []
        ascii_only: list[tuple[int, _Candidates]] = []
        whole: set[int] = set()
        for i, group in enumerate(self.groups):
            candidates = _candidates(group)
            if candidates is not None:
                any_text.append((i, candidates))
            elif (candidates := _candidates(group, ascii_text=True)) is not None and not (
                _any_word(candidates)
            ):
                ascii_only.append((i, candidates))
            else:
                whole.add(i)
        self._index = _Index(any_text)
        self._ascii_index = _Index(any_text + ascii_only)
        self._whole = frozenset(whole)
        self._whole_unless_ascii = frozenset(whole | {i for i, _ in ascii_only})

    def scan(self, text: str) -> dict[int, tuple[str, ...]]:
        """Group index -> its distinct phrases (stripped, lower-cased) in order of first
        occurrence, at most ``max_hits`` of them; groups without a match are left out."""
        found: dict[int, tuple[str, ...]] = {}
        if text.isascii():
            positions, whole = self._ascii_index.positions(text), self._whole
        else:
            positions, whole = self._index.positions(text), self._whole_unless_ascii
        for i in sorted(positions.keys() | whole):
            group = self.groups[i]
            hits: Iterable[re.Match[str]]
            if i in positions:
                hits = finditer_at(group.regex, text, sorted(set(positions[i])))
            else:
                hits = group.regex.finditer(text)
            seen: dict[str, None] = {}
            for hit in hits:
                phrase = hit.group(0).strip().lower()
                if phrase and phrase not in seen:
                    seen[phrase] = None
                    if len(seen) >= group.max_hits:
                        break
            if seen:
                found[i] = tuple(seen)
        return found
