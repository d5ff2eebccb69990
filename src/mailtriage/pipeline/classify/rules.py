"""Rules: the TOML rules file -> a frozen, compiled :class:`Rules` value.

How a rules file is read:

* A *signal group* has a ``weight`` and pattern lists ``de``, ``en`` and ``any`` (syntax
  in :mod:`mailtriage.pipeline.classify.patterns`). The language keys only organise the
  file: every pattern is tried on every message, because mixed-language mails (German
  text, English error message) are common.
* A group's score per message part is ``weight * part weight * (1 + d + d^2 ...)``
  over the distinct phrases it matched (d = ``scoring.repeat_decay``), at most ``cap``
  in total if the group sets one.
* ``scoring.ignore`` patterns are blanked out before matching (the vendor's own name).

:func:`parse_rules` is pure; :func:`load_rules` reads the file (call it at the edge,
once, and pass the value into the pipeline).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailtriage.pipeline.classify.linear import LinearModel
from mailtriage.pipeline.classify.patterns import Scanner, SignalGroup, compile_terms
from mailtriage.pipeline.classify.values import LEVELS, PRIORITIES, ZONES

__all__ = [
    "PRIO_TARGETS",
    "Category",
    "LevelRule",
    "PrioritySignal",
    "Rules",
    "RulesError",
    "SenderRule",
    "parse_rules",
    "rules_from_toml",
]

PRIO_TARGETS = ("urgent", "high", "normal", "low", "workaround")


class RulesError(ValueError):
    """A rules file is unreadable or invalid; the message names the key."""


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
    # every signal group above, by its ``index``, for one-pass matching
    scanner: Scanner = field(default_factory=lambda: Scanner(()), compare=False)
    # combines the rules' decisions with the words (None: the rules alone decide)
    model: LinearModel | None = field(default=None, compare=False)


class _Reader:
    """Typed access to the parsed TOML with error messages that name the key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.groups: list[SignalGroup] = []  # every group read, in order (its index)

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


_GROUP_KEYS = {"name", "weight", "de", "en", "any", "max_hits", "cap"}


_BACKREF = re.compile(r"\\[1-9]|\(\?P=")


def _self_contained(term: str) -> bool:
    """Whether a pattern cannot borrow syntax from its neighbours in an alternation:
    its parentheses and brackets balance, it does not end in a lone backslash and it
    refers to no other group. (Such a pattern is valid alone iff it is valid among them.)"""
    if _BACKREF.search(term):
        return False
    depth = 0
    in_class = escaped = False
    class_start = -1
    for i, ch in enumerate(term):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            # "]" right after "[" or "[^" is a literal
            in_class = ch != "]" or i == class_start or term[class_start:i] == "^"
        elif ch == "[":
            in_class, class_start = True, i + 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not escaped and not in_class


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
    # Start-up: compile the group's alternation once; each pattern is compiled on its own
    # (to name the bad one) only when that fails or when a pattern could be valid only
    # in company (unbalanced brackets, a back-reference, a trailing backslash).
    regex = None
    if all(_self_contained(t) for t in terms):
        try:
            regex = re.compile(compile_terms(terms))
        except re.error:
            regex = None
    if regex is None:
        for term in terms:
            try:
                re.compile(compile_terms([term]))
            except re.error as exc:
                raise r.fail(
                    f"{path}: pattern {term!r}", f"invalid regular expression ({exc})"
                ) from exc
        regex = re.compile(compile_terms(terms))
    if regex.search(""):
        raise r.fail(path, "a pattern matches the empty string")
    max_hits = int(r.number(data, "max_hits", path + ".", 3))
    if max_hits < 1:
        raise r.fail(f"{path}.max_hits", "must be at least 1")
    cap = data.get("cap")
    if cap is not None:
        cap = r.number(data, "cap", path + ".")
        if cap < 0:  # it bounds the size of the group's total, either sign
            raise r.fail(f"{path}.cap", "must not be negative")
    group = SignalGroup(
        name=r.string(data, "name", path + ".", default=default_name),
        weight=r.number(data, "weight", path + "."),
        regex=regex,
        max_hits=max_hits,
        cap=cap,
        terms=tuple(terms),
        index=len(r.groups),
    )
    r.groups.append(group)
    return group


def _groups(
    r: _Reader, data: Mapping[str, Any], key: str, path: str, base: str
) -> tuple[SignalGroup, ...]:
    return tuple(
        _group(r, g, item_path, f"{base}#{i}")
        for i, (item_path, g) in enumerate(r.tables(data, key, path))
    )


def parse_rules(data: Mapping[str, Any], source: str) -> Rules:
    """Validate and compile parsed TOML (pure). Raises :class:`RulesError`."""
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
            ignore = re.compile(compile_terms(ignore_terms))
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
    r.known(thresholds_raw, set(PRIO_TARGETS), "priority.thresholds.")
    thresholds = {k: r.number(thresholds_raw, k, "priority.thresholds.") for k in PRIO_TARGETS}
    psignals: list[PrioritySignal] = []
    for i, (path, ps) in enumerate(r.tables(prio, "signals", "priority.")):
        group = _group(r, ps, path, f"priority#{i}")
        ow = ps.get("overrides_workaround", False)
        if not isinstance(ow, bool):
            raise r.fail(f"{path}.overrides_workaround", f"expected true or false, got {ow!r}")
        psignals.append(
            PrioritySignal(
                group=group,
                target=r.string(ps, "target", path + ".", PRIO_TARGETS),
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
        scanner=Scanner(r.groups),
    )


def rules_from_toml(raw: bytes, source: str) -> Rules:
    """The rules in the TOML text ``raw`` (read by the caller); ``source`` names it in
    errors. Raises :class:`RulesError` naming the offending key when it is invalid."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RulesError(f"rules {source}: not UTF-8 ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules {source}: invalid TOML: {exc}") from exc
    return parse_rules(data, source)
