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

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailtriage.pipeline.classify.fold import FOLD_TABLE

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


class Scanner:
    """Every signal group's distinct matched phrases in a text.

    One pass per group with the group's own compiled alternation (bucketed by first
    character, see :func:`compile_terms`). A single zero-width alternation of all ~1,800
    patterns (one pass, then each group tried only where something matched) gave the
    same results but was 4-5x slower in CPython's backtracking ``re``; a literal-prefix
    automaton (Aho-Corasick) would be the next step if rules grow much further.
    """

    def __init__(self, groups: Sequence[SignalGroup]) -> None:
        self.groups = tuple(groups)

    def scan(self, text: str) -> dict[int, tuple[str, ...]]:
        """Group index -> its distinct phrases (stripped, lower-cased) in order of first
        occurrence, at most ``max_hits`` of them; groups without a match are left out."""
        found: dict[int, tuple[str, ...]] = {}
        for i, group in enumerate(self.groups):
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
