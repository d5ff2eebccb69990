"""Rule-based triage: category, level, priority and language of a support mail.

The vocabulary and the decisions live in a TOML rules file (the packaged default is
``mailtriage/rules/default.toml``); this module only scores. How a rules file is
read:

* A *signal group* has a ``weight`` and pattern lists ``de``, ``en`` and ``any``. The
  language keys only organise the file: every pattern is tried on every message,
  because mixed-language mails (German text, English error message) are common.
* A pattern is a regular expression, matched case-insensitively at the start of a
  word, so ``passwort`` also finds "Passwortänderung". A leading ``*`` lets it match
  inside a word ("*passwort" finds "Benutzerpasswort"). A pattern that is one word of at
  most three letters/digits ("api", "nat") must match a whole word. A space stands for any run of
  spaces or hyphens ("sync client" finds "Sync-Client"). Umlauts and ß are folded
  (ä = ae, ß = ss) in both text and pattern, so Swiss spelling matches too.
* A group's score per message part is ``weight * part weight * (1 + d + d^2 ...)``
  over the distinct phrases it matched (d = ``scoring.repeat_decay``), at most ``cap``
  in total if the group sets one.
* ``scoring.ignore`` patterns are blanked out before matching (the vendor's own name).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from mailtriage.pipeline.language import detect_language
from mailtriage.pipeline.text import split_body

__all__ = [
    "LEVELS",
    "PRIORITIES",
    "CategoryModel",
    "Classification",
    "ClassifierInput",
    "ModelOverride",
    "Rules",
    "RulesCategory",
    "RulesError",
    "classify",
    "classify_file",
    "input_from_text",
    "load_rules",
]

LEVELS = ("L1", "L2", "L3")
PRIORITIES = ("low", "normal", "high", "urgent")
_PRIO_TARGETS = ("urgent", "high", "normal", "low", "workaround")
ZONES = ("subject", "new_text", "forwarded", "quoted", "extra_text", "attachments")
_ZONE_LABEL = {
    "subject": "subject",
    "new_text": "body",
    "forwarded": "forwarded",
    "quoted": "quoted",
    "extra_text": "attachment text",
    "attachments": "attachment name",
}

# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ClassifierInput:
    subject: str
    new_text: str  # customer's new text (BodyParts.new_text)
    forwarded_text: str  # forwarded end-user message, counts fully
    quoted_text: str  # weighs little or nothing
    attachment_names: tuple[str, ...]
    sender: str  # lowercased address, e.g. "it@kunde.de"
    extra_text: str = ""  # e.g. OCR text of screenshots (later)


@dataclass(frozen=True)
class Classification:
    level: str
    category: str
    priority: str
    language: str
    confidence: float
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "category": self.category,
            "priority": self.priority,
            "language": self.language,
            "confidence": self.confidence,
            "reasons": list(self.reasons),
        }


class RulesError(ValueError):
    """A rules file is unreadable or invalid; the message names the key."""


@dataclass(frozen=True)
class RulesCategory:
    """What the rules made of a message's category, as a model complement sees it."""

    category: str
    confidence: float
    fallback: bool  # no category scored high enough: the fallback category was taken
    ranked: tuple[tuple[str, float], ...]  # every category's score, best first


@dataclass(frozen=True)
class ModelOverride:
    category: str
    confidence: float
    reason: str  # shown after "category=<category>: "


class CategoryModel(Protocol):
    """A statistical complement (see mailtriage.triage.model): it may replace the rules'
    category where the rules are weak; it returns None to leave the rules' decision."""

    def override(self, inp: ClassifierInput, rules: RulesCategory) -> ModelOverride | None: ...


# ----------------------------------------------------------------------------- rules

_FOLD = str.maketrans(
    {
        "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss", "ẞ": "SS",
        "’": "'", "‘": "'", "`": "'", "´": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
        "–": "-", "—": "-", "‐": "-", "‑": "-", "\xa0": " ", "\u200b": "",
    }
)  # fmt: skip
_WS = re.compile(r"\s+")


def _fold(text: str) -> str:
    return _WS.sub(" ", text.translate(_FOLD)).lower()


@dataclass(frozen=True)
class SignalGroup:
    name: str
    weight: float
    regex: re.Pattern[str]
    max_hits: int = 3
    cap: float | None = None  # upper bound of the group's total over all parts


@dataclass(frozen=True)
class Category:
    name: str
    level: str
    priority: str | None
    groups: tuple[SignalGroup, ...]
    feature_weights: Mapping[str, float]


@dataclass(frozen=True)
class LevelRule:
    name: str
    set_level: str
    feature: str
    min_score: float
    if_level: tuple[str, ...]
    categories: tuple[str, ...]
    max_features: Mapping[str, float]
    min_features: Mapping[str, float]
    max_words: int | None


@dataclass(frozen=True)
class PrioritySignal:
    group: SignalGroup
    target: str  # "urgent", "high", "normal", "low", "workaround"
    overrides_workaround: bool


@dataclass(frozen=True)
class SenderRule:
    domain: str
    priority_floor: str | None
    note: str


@dataclass(frozen=True)
class Rules:
    """Compiled rules; build with :func:`load_rules`."""

    source: str
    zone_weights: Mapping[str, float]
    ignore: re.Pattern[str] | None
    repeat_decay: float
    min_category_score: float
    fallback_category: str
    question_fallback_category: str
    confident_score: float
    categories: Mapping[str, Category]
    features: Mapping[str, tuple[SignalGroup, ...]]
    level_rules: tuple[LevelRule, ...]
    priority_signals: tuple[PrioritySignal, ...]
    priority_thresholds: Mapping[str, float]
    default_priority: str
    sender_rules: tuple[SenderRule, ...] = field(default=())


class _Reader:
    """Typed access to the parsed TOML with error messages that name the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, what: str) -> RulesError:
        return RulesError(f"rules {self.source}: {key}: {what}")

    def table(self, data: Mapping[str, Any], key: str, path: str, required: bool = True) -> Any:
        if key not in data:
            if required:
                raise self.fail(f"{path}{key}", "missing table")
            return {}
        val = data[key]
        if not isinstance(val, dict):
            raise self.fail(f"{path}{key}", f"expected a table, got {type(val).__name__}")
        return val

    def tables(self, data: Mapping[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        """An optional array of tables ``[[path.key]]``: (item path, table) pairs."""
        raw = data.get(key, [])
        if not isinstance(raw, list):
            raise self.fail(f"{path}{key}", f"expected an array of tables ([[{path}{key}]])")
        items = []
        for i, item in enumerate(raw):
            item_path = f"{path}{key}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(item_path, "expected a table")
            items.append((item_path, item))
        return items

    def number(
        self, data: Mapping[str, Any], key: str, path: str, default: float | None = None
    ) -> float:
        if key not in data:
            if default is None:
                raise self.fail(f"{path}{key}", "missing number")
            return default
        val = data[key]
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise self.fail(f"{path}{key}", f"expected a number, got {val!r}")
        return float(val)

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        choices: Sequence[str] | None = None,
        default: str | None = None,
    ) -> str:
        if key not in data:
            if default is None:
                raise self.fail(f"{path}{key}", "missing string")
            return default
        val = data[key]
        if not isinstance(val, str):
            raise self.fail(f"{path}{key}", f"expected a string, got {val!r}")
        if choices is not None and val not in choices:
            raise self.fail(f"{path}{key}", f"{val!r} is not one of {', '.join(choices)}")
        return val

    def strings(self, data: Mapping[str, Any], key: str, path: str) -> list[str]:
        val = data.get(key, [])
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            raise self.fail(f"{path}{key}", "expected a list of strings")
        return list(val)

    def known(self, data: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{path}{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )


def _normalise_pattern(pattern: str) -> str:
    """Fold umlauts, lower-case literal letters (not escapes such as ``\\S``) and turn each
    space outside a ``[...]`` class into ``[\\s\\-]+``."""
    out: list[str] = []
    in_class = False
    escaped = False
    for ch in pattern.translate(_FOLD):
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


def _alternation(bodies: Sequence[str]) -> str:
    """Join pattern bodies into one alternation, bucketed by a literal first character
    so that the regex engine tries only the few alternatives that can match at a
    position. (A flat alternation of hundreds of terms made classification ~20x slower.)"""
    buckets: dict[str, list[str]] = {}
    rest: list[str] = []
    for body in bodies:
        first = body[0]
        if (
            first.isalnum()
            and len(body) > 1
            and body[1] not in "?*+{|"
            and not _has_top_level_bar(body)
        ):
            buckets.setdefault(first, []).append(body[1:])
        else:
            rest.append(body)
    parts = [f"{re.escape(k)}(?:{'|'.join(v)})" for k, v in sorted(buckets.items())]
    parts += [f"(?:{b})" for b in rest]
    return "|".join(parts)


_SHORT_WORD = re.compile(r"[a-z0-9]{1,3}")


def _compile_terms(terms: Sequence[str]) -> str:
    word_start: list[str] = []
    anywhere: list[str] = []
    for term in terms:
        body = term.strip()
        if body.startswith("*"):
            anywhere.append(_normalise_pattern(body[1:]))
            continue
        norm = _normalise_pattern(body)
        if _SHORT_WORD.fullmatch(norm):
            # "api", "nat", "ico": a short word must match whole, not as a prefix
            # ("natürlich", "icon")
            norm += r"\b"
        word_start.append(norm)
    parts = []
    if word_start:
        parts.append(rf"(?<!\w)(?:{_alternation(word_start)})")
    if anywhere:
        parts.append(_alternation(anywhere))
    return "|".join(parts)


_GROUP_KEYS = {"name", "weight", "de", "en", "any", "max_hits", "cap"}


def _group(r: _Reader, data: Any, path: str, default_name: str) -> SignalGroup:
    if not isinstance(data, dict):
        raise r.fail(path, "expected a table")
    r.known(data, _GROUP_KEYS | {"target", "overrides_workaround"}, path + ".")
    terms: list[str] = []
    for lang in ("de", "en", "any"):
        terms += r.strings(data, lang, path + ".")
    if not terms:
        raise r.fail(path, "no patterns (give at least one of de, en, any)")
    for i, term in enumerate(terms):
        if not term.strip() or term.strip() == "*":
            raise r.fail(f"{path}: pattern {i}", "empty pattern")
        try:
            re.compile(_compile_terms([term]))
        except re.error as exc:
            raise r.fail(
                f"{path}: pattern {term!r}", f"invalid regular expression ({exc})"
            ) from exc
    regex = re.compile(_compile_terms(terms))
    if regex.search(""):
        raise r.fail(path, "a pattern matches the empty string")
    max_hits = int(r.number(data, "max_hits", path + ".", 3))
    if max_hits < 1:
        raise r.fail(f"{path}.max_hits", "must be at least 1")
    cap = data.get("cap")
    if cap is not None:
        cap = r.number(data, "cap", path + ".")
    return SignalGroup(
        name=r.string(data, "name", path + ".", default=default_name),
        weight=r.number(data, "weight", path + "."),
        regex=regex,
        max_hits=max_hits,
        cap=cap,
    )


def _groups(
    r: _Reader, data: Mapping[str, Any], key: str, path: str, base: str
) -> tuple[SignalGroup, ...]:
    return tuple(
        _group(r, g, item_path, f"{base}#{i}")
        for i, (item_path, g) in enumerate(r.tables(data, key, path))
    )


def _parse_rules(data: Mapping[str, Any], source: str) -> Rules:
    r = _Reader(source)
    r.known(
        data,
        {
            "version",
            "zones",
            "scoring",
            "categories",
            "features",
            "level_rules",
            "priority",
            "sender_rules",
        },
        "",
    )
    version = r.number(data, "version", "", 1)
    if version != 1:
        raise r.fail("version", f"unsupported rules version {version:g} (expected 1)")

    zones = r.table(data, "zones", "")
    r.known(zones, set(ZONES), "zones.")
    zone_weights = {z: r.number(zones, z, "zones.", 0.0) for z in ZONES}

    scoring = r.table(data, "scoring", "")
    r.known(
        scoring,
        {
            "repeat_decay",
            "min_category_score",
            "fallback_category",
            "question_fallback_category",
            "confident_score",
            "ignore",
        },
        "scoring.",
    )
    ignore_terms = r.strings(scoring, "ignore", "scoring.")
    ignore: re.Pattern[str] | None = None
    if ignore_terms:
        try:
            ignore = re.compile(_compile_terms(ignore_terms))
        except re.error as exc:
            raise r.fail("scoring.ignore", f"invalid regular expression ({exc})") from exc

    features_raw = r.table(data, "features", "", required=False)
    features: dict[str, tuple[SignalGroup, ...]] = {}
    for fname, fdata in features_raw.items():
        if not isinstance(fdata, dict):
            raise r.fail(f"features.{fname}", "expected a table")
        r.known(fdata, {"signals", "description"}, f"features.{fname}.")
        features[fname] = _groups(r, fdata, "signals", f"features.{fname}.", fname)

    cats_raw = r.table(data, "categories", "")
    if not cats_raw:
        raise r.fail("categories", "no categories defined")
    categories: dict[str, Category] = {}
    for cname, cdata in cats_raw.items():
        path = f"categories.{cname}."
        if not isinstance(cdata, dict):
            raise r.fail(path[:-1], "expected a table")
        r.known(cdata, {"level", "priority", "signals", "feature_weights", "description"}, path)
        fw_raw = r.table(cdata, "feature_weights", path, required=False)
        fw: dict[str, float] = {}
        for fname in fw_raw:
            if fname not in features:
                raise r.fail(f"{path}feature_weights.{fname}", "no such feature in [features]")
            fw[fname] = r.number(fw_raw, fname, f"{path}feature_weights.")
        prio = cdata.get("priority")
        categories[cname] = Category(
            name=cname,
            level=r.string(cdata, "level", path, LEVELS),
            priority=None if prio is None else r.string(cdata, "priority", path, PRIORITIES),
            groups=_groups(r, cdata, "signals", path, cname),
            feature_weights=fw,
        )

    fallback = r.string(scoring, "fallback_category", "scoring.", tuple(categories), "other")
    q_fallback = r.string(
        scoring, "question_fallback_category", "scoring.", tuple(categories), fallback
    )

    level_rules: list[LevelRule] = []
    for i, (item_path, lr) in enumerate(r.tables(data, "level_rules", "")):
        path = f"{item_path}."
        r.known(
            lr,
            {
                "name",
                "set_level",
                "feature",
                "min_score",
                "if_level",
                "categories",
                "max_features",
                "min_features",
                "max_words",
                "description",
            },
            path,
        )
        feat = r.string(lr, "feature", path)
        if feat not in features:
            raise r.fail(f"{path}feature", f"no such feature {feat!r} in [features]")
        if_level = r.strings(lr, "if_level", path)
        for lv in if_level:
            if lv not in LEVELS:
                raise r.fail(f"{path}if_level", f"{lv!r} is not one of {', '.join(LEVELS)}")
        cats = r.strings(lr, "categories", path)
        for c in cats:
            if c not in categories:
                raise r.fail(f"{path}categories", f"no such category {c!r}")
        bounds: list[dict[str, float]] = []
        for key in ("max_features", "min_features"):
            raw_b = r.table(lr, key, path, required=False)
            b: dict[str, float] = {}
            for fname in raw_b:
                if fname not in features:
                    raise r.fail(f"{path}{key}.{fname}", "no such feature in [features]")
                b[fname] = r.number(raw_b, fname, f"{path}{key}.")
            bounds.append(b)
        mw = lr.get("max_words")
        if mw is not None and (isinstance(mw, bool) or not isinstance(mw, int) or mw < 1):
            raise r.fail(f"{path}max_words", f"expected a positive integer, got {mw!r}")
        level_rules.append(
            LevelRule(
                name=r.string(lr, "name", path, default=f"level_rule_{i}"),
                set_level=r.string(lr, "set_level", path, LEVELS),
                feature=feat,
                min_score=r.number(lr, "min_score", path, 1.0),
                if_level=tuple(if_level),
                categories=tuple(cats),
                max_features=bounds[0],
                min_features=bounds[1],
                max_words=mw,
            )
        )

    prio = r.table(data, "priority", "")
    r.known(prio, {"default", "thresholds", "signals"}, "priority.")
    thresholds_raw = r.table(prio, "thresholds", "priority.")
    r.known(thresholds_raw, set(_PRIO_TARGETS), "priority.thresholds.")
    thresholds = {k: r.number(thresholds_raw, k, "priority.thresholds.") for k in _PRIO_TARGETS}
    psignals: list[PrioritySignal] = []
    for i, (path, ps) in enumerate(r.tables(prio, "signals", "priority.")):
        group = _group(r, ps, path, f"priority#{i}")
        ow = ps.get("overrides_workaround", False)
        if not isinstance(ow, bool):
            raise r.fail(f"{path}.overrides_workaround", f"expected true or false, got {ow!r}")
        psignals.append(
            PrioritySignal(
                group=group,
                target=r.string(ps, "target", path + ".", _PRIO_TARGETS),
                overrides_workaround=ow,
            )
        )

    senders: list[SenderRule] = []
    for item_path, sr in r.tables(data, "sender_rules", ""):
        path = f"{item_path}."
        r.known(sr, {"domain", "priority_floor", "note"}, path)
        domain = r.string(sr, "domain", path).strip().lower().lstrip("@")
        if not domain or "@" in domain or " " in domain:
            raise r.fail(f"{path}domain", f"not a mail domain: {domain!r}")
        floor = sr.get("priority_floor")
        senders.append(
            SenderRule(
                domain=domain,
                priority_floor=None
                if floor is None
                else r.string(sr, "priority_floor", path, PRIORITIES),
                note=r.string(sr, "note", path, default=""),
            )
        )

    return Rules(
        source=source,
        zone_weights=zone_weights,
        ignore=ignore,
        repeat_decay=r.number(scoring, "repeat_decay", "scoring.", 0.5),
        min_category_score=r.number(scoring, "min_category_score", "scoring.", 1.0),
        fallback_category=fallback,
        question_fallback_category=q_fallback,
        confident_score=r.number(scoring, "confident_score", "scoring.", 6.0),
        categories=categories,
        features=features,
        level_rules=tuple(level_rules),
        priority_signals=tuple(psignals),
        priority_thresholds=thresholds,
        default_priority=r.string(prio, "default", "priority.", PRIORITIES, "normal"),
        sender_rules=tuple(senders),
    )


def load_rules(path: str | os.PathLike[str] | None = None) -> Rules:
    """Load and compile a rules file; ``None`` loads the packaged default.

    Raises :class:`RulesError` naming the offending key when the file is invalid.
    """
    if path is None:
        res = resources.files("mailtriage").joinpath("rules/default.toml")
        source = "mailtriage/rules/default.toml"
        raw = res.read_bytes()
    else:
        source = os.fspath(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise RulesError(f"rules {source}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RulesError(f"rules {source}: not UTF-8 ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules {source}: invalid TOML: {exc}") from exc
    return _parse_rules(data, source)


# ----------------------------------------------------------------------------- scoring


@dataclass
class _Hit:
    score: float
    phrase: str
    zone: str


@dataclass
class _Zone:
    name: str
    text: str  # folded, whitespace collapsed
    weight: float


def _score_group(
    group: SignalGroup, zones: Sequence[_Zone], decay: float
) -> tuple[float, list[_Hit]]:
    total = 0.0
    hits: list[_Hit] = []
    for zone in zones:
        seen: dict[str, None] = {}
        for m in group.regex.finditer(zone.text):
            phrase = m.group(0).strip().lower()
            if phrase and phrase not in seen:
                seen[phrase] = None
                if len(seen) >= group.max_hits:
                    break
        if not seen:
            continue
        factor = sum(decay**i for i in range(len(seen)))
        score = group.weight * zone.weight * factor
        total += score
        for phrase in seen:
            hits.append(_Hit(group.weight * zone.weight, phrase, zone.name))
    if group.cap is not None:
        total = min(total, group.cap) if total >= 0 else max(total, -abs(group.cap))
    return total, hits


def _score_groups(
    groups: Sequence[SignalGroup], zones: Sequence[_Zone], decay: float
) -> tuple[float, list[_Hit]]:
    total = 0.0
    hits: list[_Hit] = []
    for g in groups:
        s, h = _score_group(g, zones, decay)
        total += s
        hits += h
    return total, hits


def _fmt_hits(hits: Sequence[_Hit], limit: int = 3) -> str:
    best: dict[str, _Hit] = {}
    for h in sorted(hits, key=lambda x: -x.score):
        if h.phrase not in best:
            best[h.phrase] = h
    shown = list(best.values())[:limit]
    return ", ".join(f"'{h.phrase[:40]}' ({_ZONE_LABEL[h.zone]})" for h in shown)


def _words(text: str) -> int:
    return len(text.split())


def _language_text(inp: ClassifierInput) -> str:
    text = inp.new_text
    letters = sum(ch.isalpha() for ch in text)
    if letters < 40 and inp.forwarded_text:
        text = f"{text}\n{inp.forwarded_text}"
        letters = sum(ch.isalpha() for ch in text)
    if letters < 40:
        text = f"{inp.subject}\n{text}"
    return text


def classify(
    inp: ClassifierInput, rules: Rules, model: CategoryModel | None = None
) -> Classification:
    """Classify one message. Pure: the result depends only on ``inp``, ``rules`` and
    ``model`` (which may only change the category; level and priority follow from it)."""
    zw = rules.zone_weights
    texts = {
        "subject": inp.subject,
        "new_text": inp.new_text,
        "forwarded": inp.forwarded_text,
        "quoted": inp.quoted_text,
        "extra_text": inp.extra_text,
        "attachments": " ".join(re.sub(r"[_.]+", " ", n) for n in inp.attachment_names),
    }
    zones = []
    for z, t in texts.items():
        if not t.strip() or zw[z] <= 0:
            continue
        folded = _fold(t)
        if rules.ignore is not None:
            folded = rules.ignore.sub(" ", folded)
        zones.append(_Zone(z, folded, zw[z]))
    decay = rules.repeat_decay
    reasons: list[str] = []

    # features (cross-category evidence)
    feat: dict[str, float] = {}
    feat_hits: dict[str, list[_Hit]] = {}
    for fname, groups in rules.features.items():
        feat[fname], feat_hits[fname] = _score_groups(groups, zones, decay)

    # category
    scores: dict[str, float] = {}
    cat_hits: dict[str, list[_Hit]] = {}
    for cname, cat in rules.categories.items():
        s, h = _score_groups(cat.groups, zones, decay)
        for fname, w in cat.feature_weights.items():
            s += w * min(feat[fname], 3.0)
        scores[cname] = s
        cat_hits[cname] = h
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    top_name, top = ranked[0]
    runner_up, second = ranked[1] if len(ranked) > 1 else ("none", 0.0)
    if top < rules.min_category_score:
        category = (
            rules.question_fallback_category
            if feat.get("question", 0.0) > 0
            else rules.fallback_category
        )
        reasons.append(
            f"category={category}: fallback, no category scored >= {rules.min_category_score:g}"
        )
        confidence = 0.2
    else:
        category = top_name
        shown = _fmt_hits(cat_hits[category])
        reasons.append(
            f"category={category}: score {top:.1f} vs {runner_up} {second:.1f}"
            + (f"; kw {shown}" if shown else "")
        )
        margin = (top - max(second, 0.0)) / top
        strength = min(1.0, top / rules.confident_score)
        confidence = round(0.5 * margin + 0.5 * strength, 2)
    if model is not None:
        fell_back = top < rules.min_category_score
        suggested = model.override(
            inp, RulesCategory(category, confidence, fell_back, tuple(ranked))
        )
        if suggested is not None and suggested.category in rules.categories:
            category, confidence = suggested.category, suggested.confidence
            reasons[-1] = f"category={category}: {suggested.reason}"

    # level
    cat = rules.categories[category]
    level = cat.level
    level_reason = f"level={level}: default for {category}"
    words = _words(inp.new_text) + _words(inp.forwarded_text)
    for rule in rules.level_rules:
        if rule.if_level and level not in rule.if_level:
            continue
        if rule.categories and category not in rule.categories:
            continue
        if feat[rule.feature] < rule.min_score:
            continue
        if any(feat[f] > v for f, v in rule.max_features.items()):
            continue
        if any(feat[f] < v for f, v in rule.min_features.items()):
            continue
        if rule.max_words is not None and words > rule.max_words:
            continue
        level = rule.set_level
        shown = _fmt_hits(feat_hits[rule.feature], 2)
        level_reason = f"level={level}: rule {rule.name}" + (f" {shown}" if shown else "")
        break
    reasons.append(level_reason)

    # priority
    prio_scores = dict.fromkeys(_PRIO_TARGETS, 0.0)
    prio_hits: dict[str, list[_Hit]] = {k: [] for k in prio_scores}
    override = 0.0
    for ps in rules.priority_signals:
        s, h = _score_group(ps.group, zones, decay)
        if s <= 0 and not h:
            continue
        prio_scores[ps.target] += s
        prio_hits[ps.target] += [_Hit(x.score, f"{ps.group.name}: {x.phrase}", x.zone) for x in h]
        if ps.overrides_workaround:
            override += s
    th = rules.priority_thresholds
    has_workaround = prio_scores["workaround"] >= th["workaround"]
    default_prio = cat.priority or rules.default_priority
    urgent_s, high_s, low_s = prio_scores["urgent"], prio_scores["high"], prio_scores["low"]
    if urgent_s >= th["urgent"] and (not has_workaround or override >= th["urgent"]):
        priority, basis = "urgent", "urgent"
    elif urgent_s + high_s >= th["high"] and not has_workaround:
        priority, basis = "high", "high" if high_s >= urgent_s else "urgent"
    elif low_s >= th["low"] and low_s > urgent_s + high_s:
        priority, basis = "low", "low"
    elif has_workaround and urgent_s + high_s >= th["high"]:
        priority, basis = "normal", "workaround"
    elif default_prio == "low" and prio_scores["normal"] + urgent_s + high_s >= th["normal"]:
        # a low-by-default category (question, wish, thanks) that matters now
        priority, basis = "normal", "normal"
    else:
        priority, basis = default_prio, ""
    if basis:
        shown = _fmt_hits(prio_hits[basis], 2)
        reasons.append(f"priority={priority}: {shown}" if shown else f"priority={priority}")
    else:
        src = f"default for {category}" if cat.priority else "default"
        reasons.append(f"priority={priority}: {src}")

    domain = inp.sender.rpartition("@")[2].lower()
    for sr in rules.sender_rules:
        if sr.priority_floor and (domain == sr.domain or domain.endswith("." + sr.domain)):
            if PRIORITIES.index(priority) < PRIORITIES.index(sr.priority_floor):
                priority = sr.priority_floor
                reasons.append(
                    f"priority={priority}: sender floor for {sr.domain}"
                    + (f" ({sr.note})" if sr.note else "")
                )
            break

    # language
    language, lconf = detect_language(_language_text(inp))
    reasons.append(f"language={language}: py3langid p={lconf:.2f}")

    return Classification(
        level=level,
        category=category,
        priority=priority,
        language=language,
        confidence=float(max(0.0, min(1.0, confidence if not math.isnan(confidence) else 0.0))),
        reasons=tuple(reasons),
    )


# ----------------------------------------------------------------------------- helpers


def input_from_text(
    subject: str, body_text: str, attachment_names: Sequence[str] = (), sender: str = ""
) -> ClassifierInput:
    """Build a :class:`ClassifierInput` from a subject and plain-text body."""
    parts = split_body(body_text, subject=subject)
    return ClassifierInput(
        subject=subject,
        new_text=parts.new_text,
        forwarded_text=parts.forwarded,
        quoted_text=parts.quoted,
        attachment_names=tuple(attachment_names),
        sender=sender.strip().lower(),
    )


def classify_file(path: Path, rules: Rules, model: CategoryModel | None = None) -> Classification:
    """Parse an .eml file with :func:`mailtriage.pipeline.parse.parse_message` and classify it.

    Raises whatever the parser raises for unparseable input, and ``OSError``.
    """
    from mailtriage.pipeline.parse import parse_message  # the MIME layer, owned elsewhere

    msg = parse_message(Path(path).read_bytes())
    names = tuple(a.filename for a in msg.attachments if getattr(a, "filename", None))
    return classify(
        input_from_text(msg.subject or "", msg.text or "", names, msg.sender or ""), rules, model
    )
