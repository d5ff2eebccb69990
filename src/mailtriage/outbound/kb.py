"""Knowledge-base pointers: which articles of the index fit a ticket, and why.

``load_index`` reads the index file (TOML, see ``kb/index.example.toml``);
``match_articles`` is pure: it scores every article in the ticket's language against the
ticket's subject, text and category and returns the best few at or above a threshold,
each with the reasons for its score. Scoring (all on folded text: lower case, umlauts
and accents folded, so "Passwort zurücksetzen" matches "passwort zuruecksetzen"):

* a keyword (a word or phrase, matched at the start of a word) in the subject: +3;
  in the text: +2; each keyword counts once;
* the ticket's category among the article's categories: +2;
* words of the article's title found in the subject or text: +0.5 each, at most +1.

With the default threshold of 3, one keyword in the body is not enough; a keyword in the
subject, two keywords, or one keyword and the category are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailtriage.config import read_toml
from mailtriage.pipeline.mime import fold as fold_text

__all__ = ["KbArticle", "KbError", "KbIndex", "KbMatch", "load_index", "match_articles"]

SUBJECT_KEYWORD = 3.0
TEXT_KEYWORD = 2.0
CATEGORY = 2.0
TITLE_WORD = 0.5
TITLE_CAP = 1.0
_TEXT_CHARS = 20_000  # of the ticket's text looked at

_WORD_RE = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset({
    "and", "the", "for", "with", "your", "you", "how", "what", "when", "does", "from",
    "this", "that", "into", "oder", "und", "der", "die", "das", "mit", "fuer", "von",
    "wie", "was", "wenn", "ein", "eine", "einen", "ihr", "ihre", "ihren", "sie", "bei",
    "auf", "aus", "nicht", "kein", "keine", "wird", "werden",
})  # fmt: skip


class KbError(ValueError):
    """The index file is unreadable or invalid; the message names the file and field."""


@dataclass(frozen=True)
class KbArticle:
    id: str
    language: str
    title: str
    url: str
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    abstract: str = ""


@dataclass(frozen=True)
class KbIndex:
    articles: tuple[KbArticle, ...]
    source: str = ""


@dataclass(frozen=True)
class KbMatch:
    article: KbArticle
    score: float
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.article.id,
            "title": self.article.title,
            "url": self.article.url,
            "score": self.score,
            "reasons": list(self.reasons),
        }


def fold(text: str) -> str:
    """The words of ``text``, folded (mime.fold: lower case, umlauts spelled out,
    other accents dropped), one space apart."""
    return " ".join(_WORD_RE.findall(fold_text(text)))


def _contains(haystack: str, needle: str) -> bool:
    """``needle`` (folded) at the start of a word of ``haystack`` (folded)."""
    return bool(needle) and re.search(r"(?:^| )" + re.escape(needle), haystack) is not None


def match_articles(
    index: KbIndex,
    *,
    subject: str,
    text: str,
    category: str | None,
    language: str,
    limit: int = 3,
    min_score: float = 3.0,
) -> tuple[KbMatch, ...]:
    """The best ``limit`` articles in ``language`` scoring at least ``min_score``."""
    subject_f = fold(subject)
    text_f = fold(text[:_TEXT_CHARS])
    both = f"{subject_f} {text_f}"
    matches: list[KbMatch] = []
    for article in index.articles:
        if article.language != language:
            continue
        score = 0.0
        reasons: list[str] = []
        for keyword in dict.fromkeys(fold(k) for k in article.keywords):
            if _contains(subject_f, keyword):
                score += SUBJECT_KEYWORD
                reasons.append(f"keyword {keyword!r} in subject (+{SUBJECT_KEYWORD:g})")
            elif _contains(text_f, keyword):
                score += TEXT_KEYWORD
                reasons.append(f"keyword {keyword!r} in text (+{TEXT_KEYWORD:g})")
        if category and category in article.categories:
            score += CATEGORY
            reasons.append(f"category {category} (+{CATEGORY:g})")
        title_words = [w for w in dict.fromkeys(fold(article.title).split()) if _significant(w)]
        found = [w for w in title_words if _contains(both, w)]
        if found:
            bonus = min(TITLE_CAP, TITLE_WORD * len(found))
            score += bonus
            reasons.append(f"title words {', '.join(found)} (+{bonus:g})")
        if score >= min_score:
            matches.append(KbMatch(article, score, tuple(reasons)))
    matches.sort(key=lambda m: (-m.score, m.article.id))
    return tuple(matches[: max(0, limit)])


def _significant(word: str) -> bool:
    return len(word) >= 4 and word not in _STOPWORDS and not word.isdigit()


def load_index(path: str | Path) -> KbIndex:
    """Read and check an index file; raises KbError naming the file and the field."""
    file = Path(path)
    data = read_toml(file, KbError)
    raw = data.get("articles", [])
    if not isinstance(raw, list):
        raise KbError(f"{file}: articles: expected an array of tables ([[articles]])")
    articles: list[KbArticle] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"{file}: articles[{i}]"
        if not isinstance(item, dict):
            raise KbError(f"{where}: expected a table")
        unknown = sorted(set(item) - {f for f in KbArticle.__dataclass_fields__})
        if unknown:
            raise KbError(f"{where}.{unknown[0]}: unknown key")
        article = KbArticle(
            id=_string(item, "id", where),
            language=_string(item, "language", where),
            title=_string(item, "title", where),
            url=_string(item, "url", where),
            keywords=_strings(item, "keywords", where),
            categories=_strings(item, "categories", where),
            abstract=_string(item, "abstract", where, required=False),
        )
        if article.id in seen:
            raise KbError(f"{where}.id: duplicate id {article.id!r}")
        if not re.match(r"https?://", article.url):
            raise KbError(f"{where}.url: expected an http(s) URL, got {article.url!r}")
        seen.add(article.id)
        articles.append(article)
    return KbIndex(tuple(articles), str(file))


def _string(item: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = item.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise KbError(f"{where}.{key}: expected a non-empty string")
    return value.strip()


def _strings(item: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise KbError(f"{where}.{key}: expected a list of strings")
    return tuple(v.strip() for v in value)
