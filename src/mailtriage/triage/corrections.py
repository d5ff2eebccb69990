"""The database side of learning from agents.

* :func:`correct_ticket` - an agent sets labels; the ticket changes and an Event
  ``corrected`` keeps before, after and who. Corrected labels are training data.
* :func:`reclassify_ticket` - run the current rules (and model) again on the ticket's
  first inbound article; a ticket with a correction keeps its human labels unless forced.
* :func:`correction_examples` - every corrected ticket's latest correction with the text
  of its first inbound article, as training examples.

The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from mailtriage.pipeline.classify import (
    LEVELS,
    PRIORITIES,
    CategoryModel,
    ClassifierInput,
    Rules,
    classify,
    input_from_text,
)
from mailtriage.store.models import Article, Event, Ticket
from mailtriage.store.queries import NotFound, ticket_reference
from mailtriage.triage.training import Example

__all__ = [
    "LABELS",
    "LANGUAGES",
    "Correction",
    "InvalidLabel",
    "Reclassified",
    "article_input",
    "correct_ticket",
    "correction_examples",
    "reclassify_ticket",
    "taxonomy",
    "validate_labels",
]

LABELS = ("level", "category", "priority", "language")
LANGUAGES = ("de", "en", "other")
CORRECTED = "corrected"
RECLASSIFIED = "reclassified"


class InvalidLabel(ValueError):
    """A label value outside the taxonomy; the message names the allowed values."""


def taxonomy(rules: Rules) -> dict[str, tuple[str, ...]]:
    """The allowed values per label; categories are those of the rules in use."""
    return {
        "level": LEVELS,
        "category": tuple(rules.categories),
        "priority": PRIORITIES,
        "language": LANGUAGES,
    }


def validate_labels(values: Mapping[str, str | None], rules: Rules) -> dict[str, str]:
    """The given (non-None) labels, checked; raises InvalidLabel naming the allowed values."""
    allowed = taxonomy(rules)
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key not in allowed:
            raise InvalidLabel(f"unknown label {key!r} (labels: {', '.join(LABELS)})")
        if value not in allowed[key]:
            raise InvalidLabel(
                f"--{key}: {value!r} is not one of {', '.join(sorted(allowed[key]))}"
            )
        out[key] = value
    return out


def _labels(ticket: Ticket) -> dict[str, str | None]:
    return {key: getattr(ticket, key) for key in LABELS}


def _ticket(session: Session, ticket_id: int, prefix: str) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(f"no ticket {ticket_reference(prefix, ticket_id)}")
    return ticket


# ----------------------------------------------------------------------------- corrections


@dataclass(frozen=True)
class Correction:
    ticket_id: int
    before: dict[str, str | None]
    after: dict[str, str | None]
    changed: tuple[str, ...]
    by: str
    # The labels the person gave (a level given is a level set, even if unchanged:
    # the SLA escalation rule never overrides it).
    given: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "before": self.before,
            "after": self.after,
            "changed": list(self.changed),
            "by": self.by,
            "set": list(self.given),
        }


def correct_ticket(
    session: Session, ticket_id: int, labels: Mapping[str, str], by: str, prefix: str = "DM"
) -> Correction:
    """Set validated ``labels`` on a ticket and record who did it.

    Setting a label to the value it has still counts: the agent confirmed it, so the
    correction is recorded (and trains the model) with nothing in ``changed``.
    """
    ticket = _ticket(session, ticket_id, prefix)
    before = _labels(ticket)
    after = before | dict(labels)
    changed = tuple(k for k in LABELS if after[k] != before[k])
    for key, value in labels.items():
        setattr(ticket, key, value)
    ticket.confidence = 1.0
    reasons = [
        r for r in (ticket.classification_reasons or []) if r.split("=", 1)[0] not in changed
    ]
    reasons[:0] = [f"{k}={after[k]}: corrected by {by} (was {before[k] or '-'})" for k in changed]
    ticket.classification_reasons = reasons
    given = tuple(k for k in LABELS if k in labels)
    correction = Correction(ticket_id, before, after, changed, by, given)
    session.add(Event(ticket_id=ticket_id, kind=CORRECTED, actor=by, detail=correction.to_dict()))
    session.flush()
    return correction


# ----------------------------------------------------------------------------- inputs


def article_input(article: Article) -> ClassifierInput:
    """What the classifier saw for this article: subject, text, attachment names and
    the stored OCR text of its screenshots."""
    inp = input_from_text(
        article.subject,
        article.text,
        tuple(a.filename for a in article.attachments),
        article.sender,
    )
    ocr = "\n".join(a.ocr_text for a in article.attachments if a.ocr_text)
    return replace(inp, extra_text=ocr) if ocr else inp


def _first_inbound(session: Session, ticket_ids: Sequence[int]) -> dict[int, Article]:
    """The first inbound article of each ticket (attachments loaded)."""
    first: dict[int, Article] = {}
    if not ticket_ids:
        return first
    rows = session.scalars(
        select(Article)
        .where(Article.ticket_id.in_(ticket_ids), Article.direction == "in")
        .options(selectinload(Article.attachments))
        .order_by(Article.id)
    )
    for article in rows:
        first.setdefault(article.ticket_id, article)
    return first


def _corrected(session: Session, ticket_ids: Sequence[int]) -> dict[int, str]:
    """Ticket id -> who corrected it last, for the tickets among ``ticket_ids`` that
    have a correction."""
    rows = session.execute(
        select(Event.ticket_id, Event.actor)
        .where(Event.kind == CORRECTED, Event.ticket_id.in_(ticket_ids))
        .order_by(Event.id)
    )
    return {tid: actor for tid, actor in rows if tid is not None}


# ----------------------------------------------------------------------------- reclassify


@dataclass(frozen=True)
class Reclassified:
    ticket_id: int
    outcome: str  # "reclassified", "unchanged", "skipped"
    before: dict[str, str | None]
    after: dict[str, str | None]
    reasons: tuple[str, ...] = ()
    note: str = ""  # why it was skipped

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(k for k in LABELS if self.before[k] != self.after[k])

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "outcome": self.outcome,
            "before": self.before,
            "after": self.after,
            "changed": list(self.changed),
            "reasons": list(self.reasons),
        }
        if self.note:
            data["note"] = self.note
        return data


def reclassify_tickets(
    session: Session,
    ticket_ids: Sequence[int],
    rules: Rules,
    model: CategoryModel | None,
    *,
    force: bool = False,
    actor: str = "system",
) -> list[Reclassified]:
    """Classify the first inbound article of each ticket again and store the result.

    The ticket gets the new labels, confidence and reasons; an Event ``reclassified``
    (before, after, reasons) is recorded when a label changed. A corrected ticket is
    skipped unless ``force``. A ticket without an inbound article is skipped.
    """
    tickets = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids)))}
    articles = _first_inbound(session, ticket_ids)
    corrected = _corrected(session, ticket_ids)
    results = []
    for ticket_id in ticket_ids:
        ticket = tickets[ticket_id]
        before = _labels(ticket)
        if ticket_id in corrected and not force:
            note = f"corrected by {corrected[ticket_id]}; --force overrides the correction"
            results.append(Reclassified(ticket_id, "skipped", before, before, note=note))
            continue
        article = articles.get(ticket_id)
        if article is None:
            results.append(
                Reclassified(ticket_id, "skipped", before, before, note="no inbound article")
            )
            continue
        c = classify(article_input(article), rules, model)
        after: dict[str, str | None] = {
            "level": c.level,
            "category": c.category,
            "priority": c.priority,
            "language": c.language,
        }
        for key, value in after.items():
            setattr(ticket, key, value)
        ticket.confidence = c.confidence
        ticket.classification_reasons = list(c.reasons)
        result = Reclassified(
            ticket_id,
            "reclassified" if after != before else "unchanged",
            before,
            after,
            c.reasons,
        )
        if after != before:
            detail = result.to_dict() | {"confidence": c.confidence}
            del detail["outcome"]
            session.add(Event(ticket_id=ticket_id, kind=RECLASSIFIED, actor=actor, detail=detail))
        results.append(result)
    session.flush()
    return results


def reclassify_ticket(
    session: Session,
    ticket_id: int,
    rules: Rules,
    model: CategoryModel | None,
    *,
    force: bool = False,
    actor: str = "system",
    prefix: str = "DM",
) -> Reclassified:
    _ticket(session, ticket_id, prefix)
    return reclassify_tickets(session, [ticket_id], rules, model, force=force, actor=actor)[0]


def all_ticket_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Ticket.id).order_by(Ticket.id)))


# ----------------------------------------------------------------------------- training data


def correction_examples(session: Session, prefix: str = "DM") -> list[Example]:
    """Each corrected ticket's latest correction ("after" labels) with its first inbound
    article as the input. Tickets without an inbound article are left out."""
    latest: dict[int, Mapping[str, Any]] = {}
    for ticket_id, detail in session.execute(
        select(Event.ticket_id, Event.detail).where(Event.kind == CORRECTED).order_by(Event.id)
    ):
        if ticket_id is not None and isinstance(detail, dict):
            latest[ticket_id] = detail.get("after") or {}
    ids = sorted(latest)
    articles: dict[int, Article] = {}
    for chunk in _chunks(ids, 500):
        articles |= _first_inbound(session, chunk)
    examples = []
    for ticket_id in ids:
        labels = latest[ticket_id]
        if ticket_id not in articles or any(not labels.get(k) for k in LABELS):
            continue
        examples.append(
            Example(
                article_input(articles[ticket_id]),
                {k: str(labels[k]) for k in LABELS},
                ticket_reference(prefix, ticket_id),
                kind="correction",
            )
        )
    return examples


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
