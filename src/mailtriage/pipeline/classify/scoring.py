"""Scoring: what the rules (and optionally a category model) make of one message.

Pure: :func:`classify` takes the message, the loaded :class:`Rules` and the model as
values and does no I/O. It reads at most :data:`MAX_ZONE_CHARS` characters of each part
of the message, so a 30 MB body costs no more than a long mail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, replace

from mailtriage.pipeline.classify.fold import fold
from mailtriage.pipeline.classify.impact import ImpactFacts, extract_facts, priority_from_facts
from mailtriage.pipeline.classify.linear import LinearModel, meta_features
from mailtriage.pipeline.classify.patterns import SignalGroup
from mailtriage.pipeline.classify.rules import PRIO_TARGETS, Rules
from mailtriage.pipeline.classify.values import (
    PRIORITIES,
    CategoryModel,
    Classification,
    ClassifierInput,
    RulesCategory,
)
from mailtriage.pipeline.language import detect_language, has_letters
from mailtriage.pipeline.text import BodyParts, split_body

__all__ = ["MAX_ZONE_CHARS", "bounded", "classify", "input_from_parts", "input_from_text"]

# Each part of a message (new text, forwarded, quoted, screenshot text ...) is read up to
# this many characters: the customer states the problem at the start, and the cost of a
# message stays bounded whatever its size.
MAX_ZONE_CHARS = 16_384
# A rule feature (problem, question ...) counts at most this much, for a category's
# score and for the combining model.
FEATURE_CAP = 3.0
_MAX_NAMES = 50

_ZONE_LABEL = {
    "subject": "subject",
    "new_text": "body",
    "forwarded": "forwarded",
    "quoted": "quoted",
    "extra_text": "attachment text",
    "attachments": "attachment name",
}


def bounded(text: str) -> str:
    """The prefix of ``text`` that classification reads."""
    return text[:MAX_ZONE_CHARS]


def _zone_texts(inp: ClassifierInput) -> dict[str, str]:
    names = inp.attachment_names[:_MAX_NAMES]
    return {
        "subject": bounded(inp.subject),
        "new_text": bounded(inp.new_text),
        "forwarded": bounded(inp.forwarded_text),
        "quoted": bounded(inp.quoted_text),
        "extra_text": bounded(inp.extra_text),
        "attachments": bounded(" ".join(re.sub(r"[_.]+", " ", n) for n in names)),
    }


@dataclass
class _Hit:
    score: float
    phrase: str
    zone: str


@dataclass
class _Zone:
    name: str
    weight: float
    matches: Mapping[int, tuple[str, ...]]  # group index -> distinct phrases (Scanner.scan)


def _score_group(
    group: SignalGroup, zones: Sequence[_Zone], decay: float
) -> tuple[float, list[_Hit]]:
    total = 0.0
    hits: list[_Hit] = []
    for zone in zones:
        seen = zone.matches.get(group.index, ())
        if not seen:
            continue
        factor = sum(decay**i for i in range(len(seen)))
        score = group.weight * zone.weight * factor
        total += score
        for phrase in seen:
            hits.append(_Hit(group.weight * zone.weight, phrase, zone.name))
    if group.cap is not None:
        total = min(total, group.cap) if total >= 0 else max(total, -group.cap)
    return total, hits


def _score_groups(
    groups: Sequence[SignalGroup], zones: Sequence[_Zone], decay: float, matched: Set[int]
) -> tuple[float, list[_Hit]]:
    """The groups' summed scores and their hits; ``matched``: the indices of the groups
    that matched in some zone (most of the rules' groups match nowhere in a mail)."""
    total = 0.0
    hits: list[_Hit] = []
    for g in groups:
        if g.index not in matched:  # no zone: it scores 0.0 with no hits
            continue
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
    text = bounded(inp.new_text)
    enough = has_letters(text, 40)
    if not enough and inp.forwarded_text:
        text = f"{text}\n{bounded(inp.forwarded_text)}"
        enough = has_letters(text, 40)
    if not enough:
        text = f"{inp.subject}\n{text}"
    return text


@dataclass(frozen=True)
class Decision:
    level: str
    category: str
    priority: str
    reasons: tuple[str, ...]
    scores: tuple[tuple[str, float], ...] = ()  # every category's rule score, best first
    fallback: bool = False  # no category scored enough: the fallback category was taken


def model_text(inp: ClassifierInput) -> str:
    """The folded text the combining model and the impact facts read."""
    parts = (inp.subject, inp.new_text, inp.forwarded_text, inp.extra_text)
    return fold("\n".join(bounded(p) for p in parts if p))


def combine_features(
    inp: ClassifierInput, rules_decision: Decision, default_priority: str = "normal"
) -> tuple[str, dict[str, float], ImpactFacts]:
    """(folded text, meta features, impact facts) of a message for the linear model."""
    text = model_text(inp)
    facts = extract_facts(text)
    by_facts, _ = priority_from_facts(facts, default_priority)
    meta = meta_features(
        rules_decision.category, rules_decision.level, rules_decision.priority, facts.names()
    )
    meta[f"facts.priority={by_facts}"] = 1.0
    for reason in rules_decision.reasons:
        # a level rule (who already tried, code must change, simple question) fired
        if reason.startswith("level=") and ": rule " in reason:
            rule = reason.split(": rule ", 1)[1].split(" ", 1)[0]
            meta[f"rules.level_rule={rule}"] = 1.0
            meta["rules.level_rule"] = 1.0
    top = max((s for _, s in rules_decision.scores), default=0.0)
    if top > 0:
        for name, score in rules_decision.scores:
            if score > 0:
                meta[f"rules.score.{name}"] = round(score / top, 4)
    return text, meta, facts


# The linear model replaces the rules' category only when it is at least this sure, and
# this much surer of its category than of the rules' one.
MIN_CATEGORY_P = 0.2
MIN_CATEGORY_MARGIN = 0.0
# ... and where no category scored at all (the rules fell back: small talk, thanks,
# nonsense), this sure: such mails give the words little to go on.
MIN_CATEGORY_P_FALLBACK = 0.5
# A mail this short ("see screenshot", "thanks, close it") gives the words too little to
# go on: there the model does not replace the rules' category.
MIN_MODEL_WORDS = 25


def _combine(
    model: LinearModel,
    inp: ClassifierInput,
    rules: Rules,
    decision: Decision,
    keep_category: bool,
    zones: Sequence[_Zone],
) -> Decision:
    """Weigh the rules' decision against the words and the impact facts.

    The category is the model's where it is sure enough and the rules' otherwise; the
    level follows from the category by the rules (default level, level rules), so it
    stays consistent; the priority is the model's, which reads the rules' priority and
    the impact facts among its features. Changed labels name the model's features."""
    text, meta, facts = combine_features(inp, decision)
    vec = model.vector(text, meta)
    words = sum(_words(bounded(t)) for t in (inp.new_text, inp.forwarded_text, inp.extra_text))
    if "category" in model.labels and not keep_category and words >= MIN_MODEL_WORDS:
        pred = model.predict("category", vec)
        margin = pred.probability - pred.probabilities.get(decision.category, 0.0)
        least = MIN_CATEGORY_P_FALLBACK if decision.fallback else MIN_CATEGORY_P
        sure = (
            pred.probability >= least
            and margin >= MIN_CATEGORY_MARGIN
            and pred.label in rules.categories
        )
        if sure and pred.label != decision.category:
            why = ", ".join(f"'{f}'" for f in pred.features)
            reason = f"model p={pred.probability:.2f} (rules {decision.category}); {why}"
            forced = (pred.label, reason)
            decision, _, _ = decide_by_rules(inp, rules, None, forced, zones)
    if "priority" in model.labels:
        pred = model.predict("priority", vec)
        if pred.label != decision.priority:
            why = ", ".join(f"'{f}'" for f in pred.features)
            if facts.names():
                why += f"; facts {', '.join(facts.names())}"
            new = (
                f"priority={pred.label}: model p={pred.probability:.2f} "
                f"(rules {decision.priority}); {why}"
            )
            reasons = tuple(new if r.startswith("priority=") else r for r in decision.reasons)
            decision = replace(decision, priority=pred.label, reasons=reasons)
    return decision


def classify(
    inp: ClassifierInput, rules: Rules, model: CategoryModel | None = None
) -> Classification:
    """Classify one message. Pure: the result depends only on ``inp``, ``rules`` and
    ``model`` (an agents' correction model, which may only change the category).

    The rules decide first (:func:`decide_by_rules`); the packaged linear model in
    ``rules.model``, if any, then weighs their decisions against the words and the impact
    facts; a sender floor may raise the priority last."""
    zones = scan_zones(inp, rules)
    decision, confidence, model_overrode = decide_by_rules(inp, rules, model, zones=zones)
    if rules.model is not None:
        decision = _combine(rules.model, inp, rules, decision, model_overrode, zones)
    if model is not None:
        # the agents' corrections-trained model, where it learnt a priority
        learnt = model.override_priority(inp, decision.priority)
        if learnt is not None and learnt.priority in PRIORITIES:
            why = f"priority={learnt.priority}: {learnt.reason}"
            replaced = tuple(why if r.startswith("priority=") else r for r in decision.reasons)
            decision = replace(decision, priority=learnt.priority, reasons=replaced)
    level, category, priority = decision.level, decision.category, decision.priority
    reasons = list(decision.reasons)

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


def scan_zones(inp: ClassifierInput, rules: Rules) -> list[_Zone]:
    """Every part of the message, folded and scanned for every signal group once."""
    zw = rules.zone_weights
    zones = []
    for z, t in _zone_texts(inp).items():
        if zw[z] <= 0 or not t.strip():
            continue
        folded = fold(t)
        if rules.ignore is not None:
            folded = rules.ignore.sub(" ", folded)
        zones.append(_Zone(z, zw[z], rules.scanner.scan(folded)))
    return zones


def decide_by_rules(
    inp: ClassifierInput,
    rules: Rules,
    model: CategoryModel | None = None,
    force_category: tuple[str, str] | None = None,
    zones: Sequence[_Zone] | None = None,
) -> tuple[Decision, float, bool]:
    """What the rules (and a correction model's category) decide: (decision, category
    confidence, whether the correction model chose the category). ``force_category``
    (category, reason) replaces the rules' own choice; level and priority then follow
    from it by the rules, as they would from the rules' category."""
    if zones is None:
        zones = scan_zones(inp, rules)
    decay = rules.repeat_decay
    reasons: list[str] = []
    matched = set().union(*(zone.matches for zone in zones))

    # features (cross-category evidence)
    feat: dict[str, float] = {}
    feat_hits: dict[str, list[_Hit]] = {}
    for fname, groups in rules.features.items():
        feat[fname], feat_hits[fname] = _score_groups(groups, zones, decay, matched)

    # category
    scores: dict[str, float] = {}
    cat_hits: dict[str, list[_Hit]] = {}
    for cname, cat in rules.categories.items():
        s, h = _score_groups(cat.groups, zones, decay, matched)
        for fname, w in cat.feature_weights.items():
            s += w * min(feat[fname], FEATURE_CAP)
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
    model_overrode = False  # an agents' correction model chose the category
    if model is not None:
        fell_back = top < rules.min_category_score
        suggested = model.override(
            inp, RulesCategory(category, confidence, fell_back, tuple(ranked))
        )
        if suggested is not None and suggested.category in rules.categories:
            category, confidence = suggested.category, suggested.confidence
            reasons[-1] = f"category={category}: {suggested.reason}"
            model_overrode = True
    if force_category is not None and not model_overrode:
        category, reason = force_category
        reasons[-1] = f"category={category}: {reason}"

    # level
    cat = rules.categories[category]
    level = cat.level
    level_reason = f"level={level}: default for {category}"
    words = _words(bounded(inp.new_text)) + _words(bounded(inp.forwarded_text))
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
    prio_scores = dict.fromkeys(PRIO_TARGETS, 0.0)
    prio_hits: dict[str, list[_Hit]] = {k: [] for k in prio_scores}
    override = 0.0
    for ps in rules.priority_signals:
        if ps.group.index not in matched:
            continue
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

    fell_back = top < rules.min_category_score and force_category is None
    decision = Decision(level, category, priority, tuple(reasons), tuple(ranked), fell_back)
    return decision, confidence, model_overrode


def input_from_text(
    subject: str, body_text: str, attachment_names: Sequence[str] = (), sender: str = ""
) -> ClassifierInput:
    """Build a :class:`ClassifierInput` from a subject and plain-text body."""
    return input_from_parts(
        subject, split_body(body_text, subject=subject), attachment_names, sender
    )


def input_from_parts(
    subject: str, parts: BodyParts, attachment_names: Sequence[str] = (), sender: str = ""
) -> ClassifierInput:
    """Build a :class:`ClassifierInput` from a subject and its body's
    ``split_body(text, subject=subject)``."""
    return ClassifierInput(
        subject=subject,
        new_text=parts.new_text,
        forwarded_text=parts.forwarded,
        quoted_text=parts.quoted,
        attachment_names=tuple(attachment_names),
        sender=sender.strip().lower(),
    )
